"""logind: node_logind_sessions{seat,remote,type,class} from systemd-logind over D-Bus, as
node_exporter's logind collector counts them.

Each run opens its own connection to the system bus on a private event loop (the collector
runs in a worker thread), lists the seats and the sessions, then asks every session's
Remote, Type and Class at once. Calls made: org.freedesktop.login1.Manager.ListSeats and
.ListSessions, org.freedesktop.DBus.Properties.Get of org.freedesktop.login1.Session
.{Remote,Type,Class}. A session whose properties cannot be read is left out; the series
cover every known remote/type/class value for every seat and the empty seat (remote
sessions such as SSH), zero where no session matches.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

log = logging.getLogger("hostagent.logind")

LOGIN1 = "org.freedesktop.login1"
MANAGER_PATH = "/org/freedesktop/login1"
# node_exporter's known values (logind as of systemd v229); anything else counts as "other".
REMOTE_VALUES = ("true", "false")
TYPE_VALUES = ("other", "unspecified", "tty", "x11", "wayland", "mir", "web")
CLASS_VALUES = ("other", "user", "greeter", "lock-screen", "background")
IN_FLIGHT = 32


@dataclass(frozen=True)
class Session:
    seat: str
    remote: str
    type: str
    klass: str


def known_or_other(value: str, known: tuple[str, ...]) -> str:
    return value if value in known else "other"


def session_from_properties(seat: str, remote: Any, kind: Any, klass: Any) -> Session | None:
    """None when Type or Class is not a string, as node_exporter drops such a session. Remote
    is shown as godbus prints a variant: true/false for a boolean."""
    if not isinstance(kind, str) or not isinstance(klass, str):
        return None
    shown = ("true" if remote else "false") if isinstance(remote, bool) else repr(remote)
    return Session(seat, shown, known_or_other(kind, TYPE_VALUES),
                   known_or_other(klass, CLASS_VALUES))


def logind_families(seats: list[str], sessions: list[Session]) -> list[Metric]:
    """seats as ListSeats gives them; the empty seat is added here."""
    counts = Counter(sessions)
    family = GaugeMetricFamily("node_logind_sessions", "Number of sessions registered in logind.",
                               labels=["seat", "remote", "type", "class"])
    for remote in REMOTE_VALUES:
        for kind in TYPE_VALUES:
            for klass in CLASS_VALUES:
                for seat in [*seats, ""]:
                    family.add_metric([seat, remote, kind, klass],
                                      counts[Session(seat, remote, kind, klass)])
    return [family]


def _call(path: str, interface: str, member: str, signature: str = "",
          body: list[Any] | None = None) -> Message:
    return Message(destination=LOGIN1, path=path, interface=interface, member=member,
                   signature=signature, body=body or [])


async def _reply(bus: MessageBus, message: Message) -> Message | None:
    reply = await bus.call(message)
    if reply is None or reply.message_type == MessageType.ERROR:
        log.debug("D-Bus error for %s %s: %s", message.path, message.member,
                  reply.body if reply is not None else None)
        return None
    return reply


async def read_logind(address: str | None) -> tuple[list[str], list[Session]]:
    bus = await MessageBus(bus_address=address, bus_type=BusType.SYSTEM).connect()
    try:
        seats_reply, sessions_reply = await asyncio.gather(
            _reply(bus, _call(MANAGER_PATH, f"{LOGIN1}.Manager", "ListSeats")),
            _reply(bus, _call(MANAGER_PATH, f"{LOGIN1}.Manager", "ListSessions")))
        if seats_reply is None:
            raise RuntimeError("unable to get seats")
        if sessions_reply is None:
            raise RuntimeError("unable to get sessions")
        seats = [str(row[0]) for row in seats_reply.body[0]]
        listed = [(str(row[3]), str(row[4])) for row in sessions_reply.body[0]]
        window = asyncio.Semaphore(IN_FLIGHT)

        async def prop(path: str, name: str) -> Any:
            async with window:
                reply = await _reply(bus, _call(
                    path, "org.freedesktop.DBus.Properties", "Get", "ss",
                    [f"{LOGIN1}.Session", name]))
            return None if reply is None else reply.body[0].value

        async def session(seat: str, path: str) -> Session | None:
            remote, kind, klass = await asyncio.gather(
                prop(path, "Remote"), prop(path, "Type"), prop(path, "Class"))
            if remote is None:
                return None
            return session_from_properties(seat, remote, kind, klass)

        found = await asyncio.gather(*(session(seat, path) for seat, path in listed))
        return seats, [s for s in found if s is not None]
    finally:
        bus.disconnect()


class LogindCollector:
    def __init__(self, bus_address: str | None = None, timeout: float = 10.0) -> None:
        self._address = bus_address
        self._timeout = timeout

    def collect(self) -> list[Metric]:
        async def bounded() -> tuple[list[str], list[Session]]:
            return await asyncio.wait_for(read_logind(self._address), self._timeout)
        try:
            seats, sessions = asyncio.run(bounded())
        except (OSError, EOFError) as exc:
            raise RuntimeError(f"unable to connect to dbus: {exc}") from exc
        return logind_families(seats, sessions)


def create(context: Context, settings: Any) -> LogindCollector:
    return LogindCollector(timeout=settings.effective_timeout)
