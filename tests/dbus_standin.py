"""A real dbus-daemon on a socket of its own, with a stand-in service on it that answers
the calls a collector makes (tests/systemd_bus.py for systemd, tests/logind_bus.py for logind).
No systemd or logind can run in this container; everything between the stand-in and the
collector is real. A stand-in module serves with `python -m MODULE ADDRESS SPEC.json`
(`main`), printing "ready" once it owns its name, until killed.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dbus_fast import Message

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


@contextmanager
def stand_in_bus(directory: Path, spec: dict[str, Any], module: str) -> Iterator[str]:
    """A dbus-daemon and the stand-in service of `module` serving spec; yields the bus
    address."""
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
            [sys.executable, "-m", module, address, str(directory / "spec.json")],
            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent)
        assert service.stdout is not None
        if service.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the stand-in service {module} did not start")
        yield address
    finally:
        for proc in (service, daemon):
            if proc is None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def unknown_property(msg: Message, interface: str, prop: str) -> Message:
    from dbus_fast import Message

    return Message.new_error(msg, "org.freedesktop.DBus.Error.UnknownProperty",
                             f"Unknown property {interface}.{prop}")


def unknown_method(msg: Message) -> Message:
    from dbus_fast import Message

    return Message.new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod",
                             f"Unknown method {msg.member}")


async def serve(address: str, name: str, handle: Callable[[Message], Message | None]) -> None:
    """Own name on the bus at address and answer with handle until the bus goes away."""
    from dbus_fast.aio import MessageBus

    bus = await MessageBus(bus_address=address).connect()
    bus.add_message_handler(handle)
    await bus.request_name(name)
    print("ready", flush=True)
    await bus.wait_for_disconnect()


def main(serve_spec: Callable[[str, dict[str, Any]], Any]) -> None:
    """A stand-in module's entry point: serve_spec(ADDRESS, the spec read from SPEC.json)."""
    asyncio.run(serve_spec(sys.argv[1], json.loads(Path(sys.argv[2]).read_text())))
