"""systemd: unit states, socket activation counters, timers, the manager's state and version,
read from the systemd manager over D-Bus as node_exporter's systemd collector does.

The collector runs in a worker thread; each run opens its own connection to the system bus
on a private event loop, asks ListUnits, then sends every per-unit property request at once
(the bus pipelines them), so 500 units cost one round trip's latency, not 500.
Calls made: org.freedesktop.systemd1.Manager.ListUnits, and org.freedesktop.DBus.Properties.Get
of Manager.{Version,Virtualization,SystemState}, Service.{Type,NRestarts,TasksCurrent,
TasksMax}, Mount.Type, Socket.{NAccepted,NConnections,NRefused}, Timer.LastTriggerUSec and
Unit.ActiveEnterTimestamp.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent.collectors.common import go_order

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

log = logging.getLogger("hostagent.systemd")

SYSTEMD = "org.freedesktop.systemd1"
MANAGER_PATH = "/org/freedesktop/systemd1"
UNIT_STATES = ("active", "activating", "deactivating", "inactive", "failed")
# The manager's SystemState property and timers' LastTriggerUSec appeared in systemd 212.
MIN_VERSION_SYSTEM_STATE = 212
_VERSION = re.compile(r"[0-9]{3,}(\.[0-9]+)?")
MAX_UINT64 = 2**64 - 1


@dataclass(frozen=True)
class Unit:
    name: str
    load_state: str
    active_state: str
    path: str


@dataclass
class Readings:
    version: str | None = None  # None: the property could not be read
    virtualization: str | None = None
    system_state: str | None = None
    units: list[Unit] = field(default_factory=list)
    # (unit name, interface, property) -> value; absent when the request failed
    properties: dict[tuple[str, str, str], Any] = field(default_factory=dict)


def parse_version(version: str | None) -> tuple[float, str]:
    """node_exporter's reading of Manager.Version: '252.22-1~deb12u1' -> (252.22, the string);
    (0, '') when it is missing or has no number of three digits or more."""
    if version is None:
        return 0.0, ""
    match = _VERSION.search(version)
    if match is None:
        return 0.0, ""
    return float(match.group()), version


def virtualization_type(value: str | None) -> str:
    if value is None:
        return "unknown"
    return value or "none"


class UnitFilter:
    """Units must match include and not match exclude (both anchored), and be loaded."""

    def __init__(self, include: str, exclude: str) -> None:
        self._include = re.compile(f"(?:{include})")
        self._exclude = re.compile(f"(?:{exclude})")

    def keep(self, unit: Unit) -> bool:
        return (self._include.fullmatch(unit.name) is not None
                and self._exclude.fullmatch(unit.name) is None
                and unit.load_state == "loaded")


@dataclass(frozen=True)
class Options:
    unit_include: str = ".+"
    unit_exclude: str = r".+\.(automount|device|mount|scope|slice)"
    task_metrics: bool = False
    restarts_metrics: bool = False
    start_time_metrics: bool = False


def wanted_properties(units: Iterable[Unit], version: float,
                      options: Options) -> list[tuple[Unit, str, str]]:
    """The per-unit properties a run asks for, as node_exporter asks for them."""
    wanted = []
    for unit in units:
        name = unit.name
        if name.endswith(".service"):
            wanted.append((unit, "Service", "Type"))
            if options.restarts_metrics:
                wanted.append((unit, "Service", "NRestarts"))
            if options.task_metrics:
                wanted += [(unit, "Service", "TasksCurrent"), (unit, "Service", "TasksMax")]
        elif name.endswith(".mount"):
            wanted.append((unit, "Mount", "Type"))
        elif name.endswith(".socket"):
            wanted += [(unit, "Socket", prop) for prop in ("NAccepted", "NConnections",
                                                            "NRefused")]
        elif name.endswith(".timer") and version >= MIN_VERSION_SYSTEM_STATE:
            wanted.append((unit, "Timer", "LastTriggerUSec"))
        if options.start_time_metrics and unit.active_state == "active":
            wanted.append((unit, "Unit", "ActiveEnterTimestamp"))
    return wanted


def systemd_families(r: Readings, options: Options) -> list[Metric]:
    version, version_label = parse_version(r.version)
    keep = UnitFilter(options.unit_include, options.unit_exclude)
    units = [unit for unit in r.units if keep.keep(unit)]
    props = r.properties

    def prop(unit: Unit, interface: str, name: str) -> Any:
        return props.get((unit.name, interface, name))

    version_family = GaugeMetricFamily("node_systemd_version", "Detected systemd version",
                                       labels=["version"])
    version_family.add_metric([version_label], version)
    virt = GaugeMetricFamily("node_systemd_virtualization_info",
                             "Detected virtualization technology",
                             labels=["virtualization_type"])
    virt.add_metric([virtualization_type(r.virtualization)], 1)

    summary: dict[str, float] = dict.fromkeys(UNIT_STATES, 0.0)
    for unit in r.units:
        summary[unit.active_state] = summary.get(unit.active_state, 0.0) + 1
    units_family = GaugeMetricFamily("node_systemd_units", "Summary of systemd unit states",
                                     labels=["state"])
    for active_state, count in summary.items():
        units_family.add_metric([active_state], count)

    state = GaugeMetricFamily("node_systemd_unit_state", "Systemd unit",
                              labels=["name", "state", "type"])
    restarts = CounterMetricFamily("node_systemd_service_restart_total",
                                   "Service unit count of Restart triggers", labels=["name"])
    start_time = GaugeMetricFamily("node_systemd_unit_start_time_seconds",
                                   "Start time of the unit since unix epoch in seconds.",
                                   labels=["name"])
    tasks_current = GaugeMetricFamily("node_systemd_unit_tasks_current",
                                      "Current number of tasks per Systemd unit",
                                      labels=["name"])
    tasks_max = GaugeMetricFamily("node_systemd_unit_tasks_max",
                                  "Maximum number of tasks per Systemd unit", labels=["name"])
    timer = GaugeMetricFamily("node_systemd_timer_last_trigger_seconds",
                              "Seconds since epoch of last trigger.", labels=["name"])
    accepted = CounterMetricFamily("node_systemd_socket_accepted_connections",
                                   "Total number of accepted socket connections",
                                   labels=["name"])
    current = GaugeMetricFamily("node_systemd_socket_current_connections",
                                "Current number of socket connections", labels=["name"])
    refused = GaugeMetricFamily("node_systemd_socket_refused_connections_total",
                                "Total number of refused socket connections", labels=["name"])
    for unit in units:
        name = unit.name
        kind = ""
        if name.endswith(".service"):
            kind = prop(unit, "Service", "Type") or ""
        elif name.endswith(".mount"):
            kind = prop(unit, "Mount", "Type") or ""
        for state_name in UNIT_STATES:
            state.add_metric([name, state_name, str(kind)],
                             1.0 if state_name == unit.active_state else 0.0)
        if options.restarts_metrics and name.endswith(".service"):
            value = prop(unit, "Service", "NRestarts")
            if value is not None:
                restarts.add_metric([name], value)
        if options.start_time_metrics:
            if unit.active_state != "active":
                start_time.add_metric([name], 0)
            else:
                value = prop(unit, "Unit", "ActiveEnterTimestamp")
                if value is not None:
                    start_time.add_metric([name], value / 1e6)
        if options.task_metrics and name.endswith(".service"):
            for family, key in ((tasks_current, "TasksCurrent"), (tasks_max, "TasksMax")):
                value = prop(unit, "Service", key)
                if value is not None and value != MAX_UINT64:
                    family.add_metric([name], value)
        if name.endswith(".timer") and version >= MIN_VERSION_SYSTEM_STATE:
            value = prop(unit, "Timer", "LastTriggerUSec")
            if value is not None:
                timer.add_metric([name], value / 1e6)
        if name.endswith(".socket"):
            # As node_exporter: without NAccepted or NConnections the unit is skipped from
            # there on; NRefused (systemd 239+) only when present.
            value = prop(unit, "Socket", "NAccepted")
            if value is None:
                continue
            accepted.add_metric([name], value)
            value = prop(unit, "Socket", "NConnections")
            if value is None:
                continue
            current.add_metric([name], value)
            value = prop(unit, "Socket", "NRefused")
            if value is not None:
                refused.add_metric([name], value)

    families: list[Metric] = [version_family, virt, units_family, state, restarts, start_time,
                              tasks_current, tasks_max, timer, accepted, current, refused]
    if version >= MIN_VERSION_SYSTEM_STATE:
        if r.system_state is None:
            raise RuntimeError("couldn't get system state")
        families.append(GaugeMetricFamily(
            "node_systemd_system_running",
            "Whether the system is operational (see 'systemctl is-system-running')",
            value=1.0 if r.system_state == "running" else 0.0))
    return go_order(f for f in families if f.samples)


# --- D-Bus ---------------------------------------------------------------------------------

IN_FLIGHT = 32

def _get(path: str, interface: str, name: str) -> Message:
    return Message(destination=SYSTEMD, path=path, interface="org.freedesktop.DBus.Properties",
                   member="Get", signature="ss", body=[interface, name])


async def _value(bus: MessageBus, message: Message) -> Any:
    """A property's value, or None when the manager answered with an error."""
    reply = await bus.call(message)
    if reply is None or reply.message_type == MessageType.ERROR:
        log.debug("D-Bus error for %s %s: %s", message.path, message.body,
                  reply.body if reply is not None else None)
        return None
    return reply.body[0].value


async def read_manager(address: str | None, options: Options) -> Readings:
    bus = await MessageBus(bus_address=address, bus_type=BusType.SYSTEM).connect()
    try:
        manager = [_value(bus, _get(MANAGER_PATH, f"{SYSTEMD}.Manager", prop))
                   for prop in ("Version", "Virtualization", "SystemState")]
        listed = bus.call(Message(destination=SYSTEMD, path=MANAGER_PATH,
                                  interface=f"{SYSTEMD}.Manager", member="ListUnits"))
        version, virtualization, system_state, reply = await asyncio.gather(*manager, listed)
        if reply is None or reply.message_type == MessageType.ERROR:
            detail = reply.body if reply is not None else "no reply"
            raise RuntimeError(f"couldn't get units: {detail}")
        readings = Readings(version=version, virtualization=virtualization,
                            system_state=system_state,
                            units=[Unit(row[0], row[2], row[3], row[6]) for row in reply.body[0]])
        keep = UnitFilter(options.unit_include, options.unit_exclude)
        wanted = wanted_properties((u for u in readings.units if keep.keep(u)),
                                   parse_version(version)[0], options)
        # A bounded window of calls in flight: pipelined, yet never more than the socket's
        # buffer takes (dbus_fast fails a write the kernel refuses with EAGAIN).
        window = asyncio.Semaphore(IN_FLIGHT)

        async def bounded(message: Message) -> Any:
            async with window:
                return await _value(bus, message)

        calls: list[Awaitable[Any]] = [bounded(_get(unit.path, f"{SYSTEMD}.{iface}", prop))
                                       for unit, iface, prop in wanted]
        for (unit, iface, prop), value in zip(wanted, await asyncio.gather(*calls),
                                              strict=True):
            if value is not None:
                readings.properties[(unit.name, iface, prop)] = value
        return readings
    finally:
        bus.disconnect()


class SystemdCollector:
    def __init__(self, options: Options, bus_address: str | None = None,
                 timeout: float = 10.0) -> None:
        self._options = options
        self._address = bus_address
        self._timeout = timeout

    def read(self) -> Readings:
        """One run on a private event loop: the collector is called from a worker thread."""
        async def bounded() -> Readings:
            return await asyncio.wait_for(read_manager(self._address, self._options),
                                          self._timeout)
        try:
            return asyncio.run(bounded())
        except (OSError, EOFError) as exc:
            raise RuntimeError(f"couldn't get dbus connection: {exc}") from exc

    def collect(self) -> list[Metric]:
        return systemd_families(self.read(), self._options)


def create(context: Context, settings: Any) -> SystemdCollector:
    options = Options(unit_include=settings.unit_include, unit_exclude=settings.unit_exclude,
                      task_metrics=settings.enable_task_metrics,
                      restarts_metrics=settings.enable_restarts_metrics,
                      start_time_metrics=settings.enable_start_time_metrics)
    return SystemdCollector(options, timeout=settings.effective_timeout)
