"""The collector table: config name -> factory. Enabling, flags and docs all derive from it.

Factories import their module lazily, so a disabled collector costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agent.collectors.base import Collector
from agent.config import Config

if TYPE_CHECKING:
    from agent.collectors.runtime import RuntimeProbes

Factory = Callable[[Config, Any], Collector]


def _cpu(config: Config, settings: Any) -> Collector:
    from agent.collectors.cpu import CpuCollector

    return CpuCollector(config.paths.procfs)


def _memory(config: Config, settings: Any) -> Collector:
    from agent.collectors.memory import MemoryCollector

    return MemoryCollector(config.paths.procfs)


def _diskstats(config: Config, settings: Any) -> Collector:
    from agent.collectors.diskstats import DiskstatsCollector

    return DiskstatsCollector(config.paths.procfs, config.paths.sysfs,
                              settings.device_include, settings.device_exclude)


def _filesystem(config: Config, settings: Any) -> Collector:
    from agent.collectors.filesystem import FilesystemCollector

    return FilesystemCollector(config.paths.procfs, config.paths.rootfs,
                               settings.mount_points_exclude, settings.fs_types_exclude,
                               settings.effective_mount_timeout)


def _netdev(config: Config, settings: Any) -> Collector:
    from agent.collectors.netdev import NetdevCollector

    return NetdevCollector(config.paths.procfs, settings.device_include, settings.device_exclude,
                           sysfs=config.paths.sysfs)


def _load(config: Config, settings: Any) -> Collector:
    from agent.collectors.load import LoadCollector

    return LoadCollector(config.paths.procfs)


def _system(config: Config, settings: Any) -> Collector:
    from agent.collectors.system import SystemCollector

    return SystemCollector(config.paths.procfs, config.paths.sysfs, config.paths.rootfs)


def _textfile(config: Config, settings: Any) -> Collector:
    from agent.collectors.textfile import TextfileCollector

    return TextfileCollector(settings.directory)


def _vmstat(config: Config, settings: Any) -> Collector:
    from agent.collectors.vmstat import VmstatCollector

    return VmstatCollector(config.paths.procfs, settings.fields)


def _netstat(config: Config, settings: Any) -> Collector:
    from agent.collectors.netstat import NetstatCollector

    return NetstatCollector(config.paths.procfs, settings.fields)


def _sockstat(config: Config, settings: Any) -> Collector:
    from agent.collectors.sockstat import SockstatCollector

    return SockstatCollector(config.paths.procfs)


def _softnet(config: Config, settings: Any) -> Collector:
    from agent.collectors.softnet import SoftnetCollector

    return SoftnetCollector(config.paths.procfs)


def _udp_queues(config: Config, settings: Any) -> Collector:
    from agent.collectors.udp_queues import UdpQueuesCollector

    return UdpQueuesCollector(config.paths.procfs)


def _timex(config: Config, settings: Any) -> Collector:
    from agent.collectors.timex import TimexCollector

    return TimexCollector()


def _entropy(config: Config, settings: Any) -> Collector:
    from agent.collectors.entropy import EntropyCollector

    return EntropyCollector(config.paths.procfs)


def _conntrack(config: Config, settings: Any) -> Collector:
    from agent.collectors.conntrack import ConntrackCollector

    return ConntrackCollector(config.paths.procfs)


def _arp(config: Config, settings: Any) -> Collector:
    from agent.collectors.arp import ArpCollector

    return ArpCollector(config.paths.procfs, settings.device_include, settings.device_exclude)


def _netclass(config: Config, settings: Any) -> Collector:
    from agent.collectors.netclass import NetclassCollector

    return NetclassCollector(config.paths.sysfs, settings.ignored_devices,
                             settings.ignore_invalid_speed)


def _runtime(config: Config, settings: Any, probes: RuntimeProbes | None = None) -> Collector:
    from agent.collectors.runtime import RuntimeCollector, RuntimeProbes

    return RuntimeCollector(probes or RuntimeProbes())


FACTORIES: dict[str, Factory] = {
    "cpu": _cpu,
    "memory": _memory,
    "diskstats": _diskstats,
    "filesystem": _filesystem,
    "netdev": _netdev,
    "load": _load,
    "system": _system,
    "textfile": _textfile,
    "vmstat": _vmstat,
    "netstat": _netstat,
    "sockstat": _sockstat,
    "softnet": _softnet,
    "udp_queues": _udp_queues,
    "runtime": _runtime,
    "timex": _timex,
    "entropy": _entropy,
    "conntrack": _conntrack,
    "arp": _arp,
    "netclass": _netclass,
}


# The node_exporter collectors whose series each hostagent collector reproduces.
NODE_EXPORTER_EQUIVALENT: dict[str, list[str]] = {
    "cpu": ["cpu"],
    "memory": ["meminfo"],
    "diskstats": ["diskstats"],
    "filesystem": ["filesystem"],
    "netdev": ["netdev"],
    "load": ["loadavg"],
    "system": ["stat", "time", "uname", "os", "filefd", "pressure"],
    "textfile": ["textfile"],
    "vmstat": ["vmstat"],
    "netstat": ["netstat"],
    "sockstat": ["sockstat"],
    "softnet": ["softnet"],
    "udp_queues": ["udp_queues"],
    "timex": ["timex"],
    "entropy": ["entropy"],
    "conntrack": ["conntrack"],
    "arp": ["arp"],
    "netclass": ["netclass"],
}


def build(name: str, config: Config, probes: RuntimeProbes | None = None) -> Collector:
    """probes: what the running agent measures about itself, read by the runtime collector
    (without them it reads a fresh set that nothing feeds)."""
    settings = getattr(config.collectors, name)
    if name == "runtime":
        return _runtime(config, settings, probes)
    return FACTORIES[name](config, settings)
