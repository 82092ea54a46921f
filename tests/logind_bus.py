"""A stand-in logind on a real dbus-daemon (tests/dbus_standin.py) that answers the
org.freedesktop.login1 calls the logind collectors (ours and node_exporter's) make:
Manager.ListSeats, Manager.ListSessions and org.freedesktop.DBus.Properties.Get of each
session's Remote, Type and Class. Seats and sessions come from a JSON spec. No logind can run
in this container, so this stands in for it; everything between it and the collector is real.

    python -m tests.logind_bus ADDRESS SPEC.json   # serves until killed; prints "ready"
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from tests.dbus_standin import main, serve, stand_in_bus, unknown_method, unknown_property

LOGIN1 = "org.freedesktop.login1"
MANAGER_PATH = "/org/freedesktop/login1"
SIGNATURES = {"Remote": "b", "Type": "s", "Class": "s"}


def session_path(session_id: str) -> str:
    return f"{MANAGER_PATH}/session/_3{session_id}"


async def serve_spec(address: str, spec: dict[str, Any]) -> None:
    from dbus_fast import Message, MessageType, Variant

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
            return unknown_property(msg, interface, prop)
        return unknown_method(msg)

    await serve(address, LOGIN1, handle)


def logind_bus(directory: Path, spec: dict[str, Any]) -> AbstractContextManager[str]:
    """A dbus-daemon and the stand-in logind; yields the bus address."""
    return stand_in_bus(directory, spec, "tests.logind_bus")


if __name__ == "__main__":
    main(serve_spec)
