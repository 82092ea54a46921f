"""A stand-in systemd manager on a real dbus-daemon (tests/dbus_standin.py) that answers the
org.freedesktop.systemd1 calls the systemd collectors (ours and node_exporter's) make:
Manager.ListUnits and org.freedesktop.DBus.Properties.Get of the manager's and units'
properties. Units and values come from a JSON spec. No systemd manager can run in this
container, so this stands in for PID 1; everything between it and the collector is real.

    python -m tests.systemd_bus ADDRESS SPEC.json   # serves until killed; prints "ready"
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from tests.dbus_standin import main, serve, stand_in_bus, unknown_method, unknown_property

SYSTEMD = "org.freedesktop.systemd1"
MANAGER_PATH = "/org/freedesktop/systemd1"
# D-Bus signatures of the properties the spec may give.
SIGNATURES = {
    "Version": "s", "Virtualization": "s", "SystemState": "s", "Type": "s", "NRestarts": "u",
    "TasksCurrent": "t", "TasksMax": "t", "NAccepted": "u", "NConnections": "u",
    "NRefused": "u", "LastTriggerUSec": "t", "ActiveEnterTimestamp": "t",
}


def unit_path(name: str) -> str:
    """systemd's object path of a unit: bytes other than [A-Za-z0-9] as _xx."""
    escaped = "".join(c if c.isascii() and c.isalnum() else f"_{ord(c):02x}" for c in name)
    return f"{MANAGER_PATH}/unit/{escaped or '_'}"


def list_units_row(unit: dict[str, Any]) -> list[Any]:
    return [unit["name"], unit.get("description", ""), unit.get("load", "loaded"),
            unit["active"], unit.get("sub", "running"), "", unit_path(unit["name"]), 0, "",
            "/"]


async def serve_spec(address: str, spec: dict[str, Any]) -> None:
    from dbus_fast import Message, MessageType, Variant

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
            return unknown_property(msg, interface, prop)
        return unknown_method(msg)

    await serve(address, SYSTEMD, handle)


def systemd_bus(directory: Path, spec: dict[str, Any]) -> AbstractContextManager[str]:
    """A dbus-daemon and the stand-in manager; yields the bus address."""
    return stand_in_bus(directory, spec, "tests.systemd_bus")


if __name__ == "__main__":
    main(serve_spec)
