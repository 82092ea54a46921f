"""A real dbus-daemon on a socket of its own, with a service that answers the
org.freedesktop.login1 calls the logind collectors (ours and node_exporter's) make:
Manager.ListSeats, Manager.ListSessions and org.freedesktop.DBus.Properties.Get of each
session's Remote, Type and Class. Seats and sessions come from a JSON spec. No logind can run
in this container, so this stands in for it; everything between it and the collector is real.

    python -m tests.logind_bus ADDRESS SPEC.json   # serves until killed; prints "ready"
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

from tests.systemd_bus import CONFIG

LOGIN1 = "org.freedesktop.login1"
MANAGER_PATH = "/org/freedesktop/login1"
SIGNATURES = {"Remote": "b", "Type": "s", "Class": "s"}


def session_path(session_id: str) -> str:
    return f"{MANAGER_PATH}/session/_3{session_id}"


async def serve(address: str, spec: dict[str, Any]) -> None:
    from dbus_fast import Message, MessageType, Variant
    from dbus_fast.aio import MessageBus

    seats = [[seat, f"{MANAGER_PATH}/seat/{seat}"] for seat in spec["seats"]]
    sessions = [[s["id"], s.get("uid", 1000), s.get("user", "user"), s.get("seat", ""),
                 session_path(s["id"])] for s in spec["sessions"]]
    properties = {session_path(s["id"]): s.get("properties", {}) for s in spec["sessions"]}

    def handle(msg: Message) -> Message | None:
        if msg.message_type != MessageType.METHOD_CALL or msg.destination != LOGIN1:
            return None
        if msg.path == MANAGER_PATH and msg.interface == f"{LOGIN1}.Manager":
            if msg.member == "ListSeats" and not spec.get("fail_seats"):
                return Message.new_method_return(msg, "a(so)", [seats])
            if msg.member == "ListSessions":
                return Message.new_method_return(msg, "a(susso)", [sessions])
        if msg.interface == "org.freedesktop.DBus.Properties" and msg.member == "Get":
            interface, prop = msg.body
            values = properties.get(msg.path or "", {})
            if interface == f"{LOGIN1}.Session" and prop in values:
                value = values[prop]
                signature = "u" if isinstance(value, int) and not isinstance(value, bool) \
                    else SIGNATURES[prop]
                return Message.new_method_return(msg, "v", [Variant(signature, value)])
            return Message.new_error(msg, "org.freedesktop.DBus.Error.UnknownProperty",
                                     f"Unknown property {interface}.{prop}")
        return Message.new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod",
                                 f"Unknown method {msg.member}")

    bus = await MessageBus(bus_address=address).connect()
    bus.add_message_handler(handle)
    await bus.request_name(LOGIN1)
    print("ready", flush=True)
    await bus.wait_for_disconnect()


@contextmanager
def logind_bus(directory: Path, spec: dict[str, Any]) -> Iterator[str]:
    """A dbus-daemon and the stand-in logind; yields the bus address."""
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
            [sys.executable, "-m", "tests.logind_bus", address, str(directory / "spec.json")],
            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent)
        assert service.stdout is not None
        if service.stdout.readline().strip() != "ready":
            raise RuntimeError("the stand-in logind did not start")
        yield address
    finally:
        for proc in (service, daemon):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=10)


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], json.loads(Path(sys.argv[2]).read_text())))
