"""A real dbus-daemon on a socket of its own, with a service that answers the
org.freedesktop.systemd1 calls the systemd collectors (ours and node_exporter's) make:
Manager.ListUnits and org.freedesktop.DBus.Properties.Get of the manager's and units'
properties. Units and values come from a JSON spec. No systemd manager can run in this
container, so this stands in for PID 1; everything between it and the collector is real.

    python -m tests.systemd_bus ADDRESS SPEC.json   # serves until killed; prints "ready"
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SYSTEMD = "org.freedesktop.systemd1"
MANAGER_PATH = "/org/freedesktop/systemd1"
# D-Bus signatures of the properties the spec may give.
SIGNATURES = {
    "Version": "s", "Virtualization": "s", "SystemState": "s", "Type": "s", "NRestarts": "u",
    "TasksCurrent": "t", "TasksMax": "t", "NAccepted": "u", "NConnections": "u",
    "NRefused": "u", "LastTriggerUSec": "t", "ActiveEnterTimestamp": "t",
}

CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


def unit_path(name: str) -> str:
    """systemd's object path of a unit: bytes other than [A-Za-z0-9] as _xx."""
    escaped = "".join(c if c.isascii() and c.isalnum() else f"_{ord(c):02x}" for c in name)
    return f"{MANAGER_PATH}/unit/{escaped or '_'}"


def list_units_row(unit: dict[str, Any]) -> list[Any]:
    return [unit["name"], unit.get("description", ""), unit.get("load", "loaded"),
            unit["active"], unit.get("sub", "running"), "", unit_path(unit["name"]), 0, "",
            "/"]


async def serve(address: str, spec: dict[str, Any]) -> None:
    from dbus_fast import Message, MessageType, Variant
    from dbus_fast.aio import MessageBus

    by_path: dict[str, dict[str, dict[str, Any]]] = {
        MANAGER_PATH: {f"{SYSTEMD}.Manager": spec.get("manager", {})}}
    for unit in spec["units"]:
        by_path[unit_path(unit["name"])] = {
            f"{SYSTEMD}.{iface}": props for iface, props in unit.get("properties", {}).items()}
    rows = [list_units_row(unit) for unit in spec["units"]]

    def handle(msg: Message) -> Message | None:
        if msg.message_type != MessageType.METHOD_CALL or msg.destination != SYSTEMD:
            return None
        if msg.member == "ListUnits" and msg.path == MANAGER_PATH:
            return Message.new_method_return(msg, "a(ssssssouso)", [rows])
        if msg.interface == "org.freedesktop.DBus.Properties" and msg.member == "Get":
            interface, prop = msg.body
            values = by_path.get(msg.path or "", {}).get(interface, {})
            if prop in values:
                return Message.new_method_return(
                    msg, "v", [Variant(SIGNATURES[prop], values[prop])])
            return Message.new_error(msg, "org.freedesktop.DBus.Error.UnknownProperty",
                                     f"Unknown property {interface}.{prop}")
        return Message.new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod",
                                 f"Unknown method {msg.member}")

    bus = await MessageBus(bus_address=address).connect()
    bus.add_message_handler(handle)
    await bus.request_name(SYSTEMD)
    print("ready", flush=True)
    await bus.wait_for_disconnect()


@contextmanager
def systemd_bus(directory: Path, spec: dict[str, Any]) -> Iterator[str]:
    """A dbus-daemon and the stand-in manager; yields the bus address."""
    daemon_binary = shutil.which("dbus-daemon")
    if daemon_binary is None:
        raise RuntimeError("dbus-daemon is not installed")
    socket = directory / "system_bus_socket"
    config = directory / "bus.conf"
    config.write_text(CONFIG.format(socket=socket))
    (directory / "spec.json").write_text(json.dumps(spec))
    address = f"unix:path={socket}"
    log = directory / "dbus-daemon.log"
    with open(log, "wb") as sink:
        daemon = subprocess.Popen([daemon_binary, f"--config-file={config}", "--nofork"],
                                  stdout=subprocess.DEVNULL, stderr=sink)
    service = None
    try:
        deadline = time.monotonic() + 10
        while not socket.exists():
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dbus-daemon did not start: {log.read_text()!r}")
            time.sleep(0.02)
        service = subprocess.Popen(
            [sys.executable, "-m", "tests.systemd_bus", address, str(directory / "spec.json")],
            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent)
        assert service.stdout is not None
        if service.stdout.readline().strip() != "ready":
            raise RuntimeError("the stand-in systemd manager did not start")
        yield address
    finally:
        for proc in (service, daemon):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=10)


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], json.loads(Path(sys.argv[2]).read_text())))
