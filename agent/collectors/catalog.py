"""The collector catalog: one declaration per collector. The configuration model, the command
line, the node_exporter equivalence of the agent's own series and the factories all derive from
it, so adding a collector is its own module plus one entry here.

A collector module provides `create(context, settings) -> Collector` (or the function named
after the colon) and is imported only when the collector is built.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from agent.collectors.base import Collector
from agent.collectors.settings import (
    CollectorSettings,
    DeviceFilterSettings,
    FieldsSettings,
    check_regex,
    flag,
)


@dataclass(frozen=True)
class Context:
    """What a factory may use besides its settings. `state` survives rebuilds on reload (one
    dict per collector name), for what must outlive a collector instance, such as hung calls."""

    procfs: Path = Path("/proc")
    sysfs: Path = Path("/sys")
    rootfs: Path = Path("/")
    udev_data: Path = Path("/run/udev/data")
    probes: Any = None
    state: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Declaration:
    name: str  # node_exporter's collector name where the collector reproduces one
    factory: str  # "agent.collectors.MODULE" or "agent.collectors.MODULE:function"
    settings: type[CollectorSettings] = CollectorSettings
    default: bool = True  # enabled unless configured otherwise, as in node_exporter
    help: str = ""
    node_exporter: bool = True  # False: hostagent's own, no node_scrape_collector_* alias

    def create(self, context: Context, settings: CollectorSettings) -> Collector:
        module, _, function = self.factory.partition(":")
        built: Collector = getattr(importlib.import_module(module), function or "create")(
            context, settings)
        return built


# --- settings of the collectors that have more than the common ones ---------------------------

class ArpSettings(DeviceFilterSettings):
    netlink: bool = Field(True, description="use netlink to gather stats instead of "
                          "/proc/net/arp")


class BcacheSettings(CollectorSettings):
    priority_stats: bool = Field(False, description="expose the expensive priority stats",
                                 json_schema_extra=flag("collector.bcache.priorityStats"))


class CpuSettings(CollectorSettings):
    guest: bool = Field(True, description="export node_cpu_guest_seconds_total",
                        json_schema_extra=flag("collector.cpu.guest"))
    info: bool = Field(False, description="export node_cpu_info",
                       json_schema_extra=flag("collector.cpu.info"))
    info_flags_include: str | None = Field(
        None, description="regex of /proc/cpuinfo flags for node_cpu_flag_info (sets info)",
        json_schema_extra=flag("collector.cpu.info.flags-include"))
    info_bugs_include: str | None = Field(
        None, description="regex of /proc/cpuinfo bugs for node_cpu_bug_info (sets info)",
        json_schema_extra=flag("collector.cpu.info.bugs-include"))

    _check_regex = field_validator("info_flags_include", "info_bugs_include")(check_regex)


class DiskstatsSettings(DeviceFilterSettings):
    device_exclude: str | None = Field(
        r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$",
        description="regex of devices to exclude")


class EthtoolSettings(DeviceFilterSettings):
    metrics_include: str = Field(".*", description="regex of ethtool stats to include")

    _check_metrics_regex = field_validator("metrics_include")(check_regex)


class FilesystemSettings(CollectorSettings):
    mount_points_exclude: str = Field(
        r"^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)",
        description="regex of mount points to exclude (\"\": none)")
    mount_points_include: str | None = Field(
        None, description="regex of mount points to include (replaces the default exclude)")
    fs_types_exclude: str = Field(
        r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs"
        r"|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs"
        r"|squashfs|erofs|sysfs|tracefs)$",
        description="regex of filesystem types to exclude (\"\": none)")
    fs_types_include: str | None = Field(
        None, description="regex of filesystem types to include (replaces the default exclude)")
    mount_timeout: float | None = Field(None, gt=0, description="per-mount statvfs timeout")
    stat_workers: int = Field(4, ge=1, le=64, description="how many statvfs calls run at once")

    @model_validator(mode="before")
    @classmethod
    def _include_replaces_default_exclude(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for kind in ("mount_points", "fs_types"):
                if data.get(f"{kind}_include") is not None:
                    data.setdefault(f"{kind}_exclude", "")
        return data

    @model_validator(mode="after")
    def _one_filter_each(self) -> FilesystemSettings:
        for kind in ("mount_points", "fs_types"):
            if getattr(self, f"{kind}_include") is not None and getattr(self, f"{kind}_exclude"):
                raise ValueError(f"{kind}_include and {kind}_exclude are mutually exclusive")
        return self

    _check_regex = field_validator("mount_points_exclude", "mount_points_include",
                                   "fs_types_exclude", "fs_types_include")(check_regex)

    @model_validator(mode="after")
    def _mount_timeout_within_timeout(self) -> FilesystemSettings:
        if self.mount_timeout is not None and self.mount_timeout >= self.effective_timeout:
            raise ValueError(f"mount_timeout ({self.mount_timeout}) must be below the "
                             f"collector's timeout ({self.effective_timeout})")
        return self

    @property
    def effective_mount_timeout(self) -> float:
        """Below the collector's timeout, so a hung mount costs that mount, not the whole run."""
        if self.mount_timeout is not None:
            return self.mount_timeout
        return min(5.0, self.effective_timeout / 2)


class HwmonSettings(CollectorSettings):
    chip_include: str | None = Field(None, description="regex of hwmon chips to include")
    chip_exclude: str | None = Field(None, description="regex of hwmon chips to exclude")
    sensor_include: str | None = Field(None, description="regex of hwmon sensors (CHIP;SENSOR) "
                                       "to include")
    sensor_exclude: str | None = Field(None, description="regex of hwmon sensors (CHIP;SENSOR) "
                                       "to exclude")

    _check_regex = field_validator("chip_include", "chip_exclude", "sensor_include",
                                   "sensor_exclude")(check_regex)


class PcideviceSettings(CollectorSettings):
    idsfile: str = Field("", description="path to pci.ids file to use for PCI device "
                         "identification")
    names: bool = Field(False, description="enable PCI device name resolution (requires "
                        "pci.ids file)")


class PowerSupplyClassSettings(CollectorSettings):
    ignored_supplies: str = Field(
        "^$", description="regex of power supplies to ignore",
        json_schema_extra=flag("collector.powersupply.ignored-supplies"))

    _check_regex = field_validator("ignored_supplies")(check_regex)


class RaplSettings(CollectorSettings):
    enable_zone_label: bool = Field(False, description="one node_rapl_joules_total family "
                                    "with a rapl_zone label")


class TapestatsSettings(CollectorSettings):
    ignored_devices: str = Field("^$", description="regex of tape devices to ignore")

    _check_regex = field_validator("ignored_devices")(check_regex)


class TextfileSettings(CollectorSettings):
    directory: Path | None = Field(None, description="directory of *.prom files")


class VmstatSettings(FieldsSettings):
    fields: str = Field(r"^(oom_kill|pgpg|pswp|pg.*fault).*",
                        description="regex of /proc/vmstat fields to export")


class NetdevSettings(DeviceFilterSettings):
    netlink: bool = Field(True, description="read interface statistics as node_exporter's "
                          "netlink mode reports them (false: /proc/net/dev)")
    enable_detailed_metrics: bool = Field(False, description="every kernel counter under its "
                                          "own name instead of /proc/net/dev's folded names")
    address_info: bool = Field(False, description="collect address-info for every device "
                               "(node_network_address_info)")
    label_ifalias: bool = Field(False, description="add the ifalias label")


class NetstatSettings(FieldsSettings):
    fields: str = Field(
        r"^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs"
        r"|OutMsgs)|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts|TCPOFOQueue"
        r"|TCPRcvQDrop)|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs"
        r"|CurrEstab)|Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$",
        description="regex of netstat fields to export")


class InterruptsSettings(CollectorSettings):
    name_include: str | None = Field(None, description="regex of interrupts to include, "
                                     "matched against NAME;INFO;DEVICES")
    name_exclude: str | None = Field(None, description="regex of interrupts to exclude, "
                                     "matched against NAME;INFO;DEVICES")
    include_zeros: bool = Field(True, description="include interrupts that have a zero value")

    _check_regex = field_validator("name_include", "name_exclude")(check_regex)

    @model_validator(mode="after")
    def _one_filter(self) -> InterruptsSettings:
        if self.name_include is not None and self.name_exclude is not None:
            raise ValueError("name_include and name_exclude are mutually exclusive")
        return self


class IpvsSettings(CollectorSettings):
    backend_labels: str = Field(
        "local_address,local_port,remote_address,remote_port,proto,local_mark",
        description="comma-separated labels of the IPVS backend series")

    @field_validator("backend_labels")
    @classmethod
    def _known_labels(cls, value: str) -> str:
        from agent.collectors.ipvs import parse_backend_labels

        parse_backend_labels(value)
        return value


class NetclassSettings(CollectorSettings):
    ignored_devices: str = Field("^$", description="regex of net devices to ignore")
    ignore_invalid_speed: bool = Field(False, description="ignore devices where the speed "
                                       "is invalid")
    netlink: bool = Field(False, description="read interface attributes over rtnetlink and "
                          "ethtool netlink instead of /sys/class/net")
    netlink_with_stats: bool = Field(
        False, description="netlink mode: expose the statistics for each network device, "
        "replacing netdev collector", json_schema_extra=flag("collector.netclass_rtnl.with-stats"))

    _check_regex = field_validator("ignored_devices")(check_regex)


class WifiSettings(CollectorSettings):
    fixtures: str = Field("", description="test fixtures to use for wifi collector metrics "
                          "(node_exporter's fixture directory layout)")


class ProcessGroupsSettings(CollectorSettings):
    config_file: Path | None = Field(None, description="a process-exporter configuration "
                                     "file (its process_names)")
    process_names: list[dict[str, Any]] = Field(
        [], description="process-exporter process_names entries, inline (file only)",
        json_schema_extra=flag(""))
    children: bool = Field(True, description="a process no entry matches joins the group of "
                           "its nearest grouped ancestor (process-exporter's -children)")
    smaps: bool = Field(True, description="read smaps_rollup for the proportional memory "
                        "types (process-exporter's -gather-smaps)")
    threads: bool = Field(True, description="per thread name series and wait channels of "
                          "multi-threaded processes (process-exporter's -threads)")
    services: bool = Field(True, description="CPU, memory, I/O, OOM kills, tasks and pressure "
                           "per systemd service, from its cgroup")
    top_n: int = Field(10, ge=0, le=100, description="how many top CPU and top memory "
                       "consumers to export (0: none)")

    @field_validator("config_file")
    @classmethod
    def _check_file(cls, value: Path | None) -> Path | None:
        from agent.collectors.process_matching import GroupingError, load_config_file

        if value is not None:
            try:
                load_config_file(value)
            except GroupingError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("process_names")
    @classmethod
    def _check_entries(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from agent.collectors.process_matching import GroupingError, parse_process_names

        try:
            parse_process_names(value, "entries")
        except GroupingError as exc:
            raise ValueError(str(exc)) from None
        return value


class StatSettings(CollectorSettings):
    softirq: bool = Field(False, description="export softirq calls per vector")


class SystemdSettings(CollectorSettings):
    unit_include: str = Field(".+", description="regex of systemd units to include (units "
                              "must match include and not match exclude)")
    unit_exclude: str = Field(r".+\.(automount|device|mount|scope|slice)",
                              description="regex of systemd units to exclude")
    enable_task_metrics: bool = Field(False, description="service units' tasks metrics "
                                      "unit_tasks_current and unit_tasks_max")
    enable_restarts_metrics: bool = Field(False, description="service units' "
                                          "service_restart_total")
    enable_start_time_metrics: bool = Field(False, description="units' "
                                            "unit_start_time_seconds")

    _check_regex = field_validator("unit_include", "unit_exclude")(check_regex)


class QdiscSettings(DeviceFilterSettings):
    fixtures: str = Field("", description="results.json directory read instead of the kernel "
                          "(node_exporter's end-to-end test fixtures)")


class SlabinfoSettings(CollectorSettings):
    slabs_include: str = Field(".*", description="regex of slabs to include")
    slabs_exclude: str = Field("", description="regex of slabs to exclude")

    _check_regex = field_validator("slabs_include", "slabs_exclude")(check_regex)


class SysctlSettings(CollectorSettings):
    include: list[str] = Field(
        [], description="numeric sysctls to export, NAME or NAME:key1,key2 (repeatable)")
    include_info: list[str] = Field(
        [], description="sysctls to export as node_sysctl_info (repeatable)")

    @field_validator("include", "include_info")
    @classmethod
    def _check_names(cls, value: list[str]) -> list[str]:
        for entry in value:
            name = entry.partition(":")[0]
            if not name or name.startswith(("/", ".")) or ".." in name.split(".") \
                    or "/" in name:
                raise ValueError(f"invalid sysctl name {entry!r}")
        return value


# --- the declarations, in node_exporter's alphabetical order -----------------------------------

DECLARATIONS: tuple[Declaration, ...] = (
    Declaration("arp", "agent.collectors.arp", ArpSettings,
                help="ARP statistics from /proc/net/arp"),
    Declaration("bcache", "agent.collectors.bcache", BcacheSettings,
                help="bcache cache sets, backing and cache devices from /sys/fs/bcache"),
    Declaration("bonding", "agent.collectors.bonding",
                help="configured and active slaves of Linux bonding interfaces"),
    Declaration("btrfs", "agent.collectors.btrfs",
                help="btrfs allocation, commit and device statistics from /sys/fs/btrfs and "
                     "device error counters by ioctl"),
    Declaration("buddyinfo", "agent.collectors.buddyinfo", default=False,
                help="free memory blocks per order from /proc/buddyinfo"),
    Declaration("cgroups", "agent.collectors.cgroups", default=False,
                help="cgroup controllers and their cgroup counts from /proc/cgroups"),
    Declaration("conntrack", "agent.collectors.conntrack",
                help="conntrack statistics (entries, limit, per-CPU stats)"),
    Declaration("cpu", "agent.collectors.cpu", CpuSettings,
                help="CPU time per mode from /proc/stat, thermal throttling, isolation"),
    Declaration("cpu_vulnerabilities", "agent.collectors.cpu_vulnerabilities", default=False,
                help="CPU vulnerabilities and their mitigations from "
                     "/sys/devices/system/cpu/vulnerabilities"),
    Declaration("cpufreq", "agent.collectors.cpufreq",
                help="CPU frequency scaling from /sys/devices/system/cpu/cpu*/cpufreq"),
    Declaration("diskstats", "agent.collectors.diskstats", DiskstatsSettings,
                help="disk I/O statistics"),
    Declaration("dmi", "agent.collectors.dmi",
                help="BIOS, board, chassis and product information from /sys/class/dmi/id"),
    Declaration("dmmultipath", "agent.collectors.dmmultipath",
                help="DM-multipath maps and the state of their paths from /sys/block/dm-*"),
    Declaration("drbd", "agent.collectors.drbd", default=False,
                help="DRBD 8 device statistics from /proc/drbd"),
    Declaration("edac", "agent.collectors.edac",
                help="ECC memory error counters from /sys/devices/system/edac"),
    Declaration("entropy", "agent.collectors.entropy", help="available entropy"),
    Declaration("ethtool", "agent.collectors.ethtool", EthtoolSettings, default=False,
                help="network device driver information, statistics and link modes over the "
                     "SIOCETHTOOL ioctl"),
    Declaration("fibrechannel", "agent.collectors.fibrechannel",
                help="Fibre Channel HBA ports and their counters from /sys/class/fc_host"),
    Declaration("filefd", "agent.collectors.system:create_filefd",
                help="file descriptor statistics from /proc/sys/fs/file-nr"),
    Declaration("filesystem", "agent.collectors.filesystem", FilesystemSettings,
                help="filesystem statistics (space, inodes) per mount point"),
    Declaration("hwmon", "agent.collectors.hwmon", HwmonSettings,
                help="hardware sensors from /sys/class/hwmon"),
    Declaration("infiniband", "agent.collectors.infiniband",
                help="InfiniBand and RDMA ports, their state, rate and counters from "
                     "/sys/class/infiniband"),
    Declaration("interrupts", "agent.collectors.interrupts", InterruptsSettings, default=False,
                help="interrupt counts per CPU from /proc/interrupts"),
    Declaration("ipvs", "agent.collectors.ipvs", IpvsSettings,
                help="IPVS connection statistics from /proc/net/ip_vs*"),
    Declaration("kernel_hung", "agent.collectors.kernel_hung", default=False,
                help="hung tasks the kernel detected (/proc/sys/kernel/hung_task_detect_count)"),
    Declaration("ksmd", "agent.collectors.ksmd", default=False,
                help="kernel samepage merging statistics from /sys/kernel/mm/ksm"),
    Declaration("lnstat", "agent.collectors.lnstat", default=False,
                help="network cache statistics per CPU from /proc/net/stat"),
    Declaration("loadavg", "agent.collectors.load", help="load average"),
    Declaration("logind", "agent.collectors.logind", default=False,
                help="sessions registered in systemd-logind, by seat, remote, type and class, "
                     "over D-Bus"),
    Declaration("mdadm", "agent.collectors.mdadm",
                help="md software RAID state from /proc/mdstat and /sys/block/md*/md"),
    Declaration("meminfo", "agent.collectors.memory", help="memory statistics from /proc/meminfo"),
    Declaration("meminfo_numa", "agent.collectors.meminfo_numa", default=False,
                help="memory statistics per NUMA node from /sys/devices/system/node"),
    Declaration("mountstats", "agent.collectors.mountstats", default=False,
                help="NFS client statistics per mount from /proc/self/mountstats"),
    Declaration("netclass", "agent.collectors.netclass", NetclassSettings,
                help="network interface properties from /sys/class/net"),
    Declaration("netdev", "agent.collectors.netdev", NetdevSettings,
                help="network device statistics"),
    Declaration("netstat", "agent.collectors.netstat", NetstatSettings,
                help="network statistics from /proc/net/netstat, snmp, snmp6"),
    Declaration("network_route", "agent.collectors.network_route", default=False,
                help="routing table entries per device over rtnetlink"),
    Declaration("nfs", "agent.collectors.nfs",
                help="NFS client RPC statistics from /proc/net/rpc/nfs"),
    Declaration("nfsd", "agent.collectors.nfsd",
                help="NFS server RPC statistics from /proc/net/rpc/nfsd"),
    Declaration("nvme", "agent.collectors.nvme",
                help="NVMe controllers and namespaces from /sys/class/nvme"),
    Declaration("os", "agent.collectors.system:create_os", help="os-release information"),
    Declaration("pcidevice", "agent.collectors.pcidevice", PcideviceSettings, default=False,
                help="PCI devices, their PCIe links, power state, SR-IOV and NUMA node from "
                     "/sys/bus/pci/devices"),
    Declaration("powersupplyclass", "agent.collectors.powersupplyclass",
                PowerSupplyClassSettings,
                help="power supplies and batteries from /sys/class/power_supply"),
    Declaration("pressure", "agent.collectors.system:create_pressure",
                help="pressure stall information (PSI)"),
    Declaration("processes", "agent.collectors.processes", default=False,
                help="process and thread counts by state, and the kernel's limits"),
    Declaration("qdisc", "agent.collectors.qdisc", QdiscSettings, default=False,
                help="root queueing discipline statistics per interface over rtnetlink"),
    Declaration("rapl", "agent.collectors.rapl", RaplSettings,
                help="RAPL energy counters from /sys/class/powercap"),
    Declaration("schedstat", "agent.collectors.schedstat",
                help="scheduler statistics per CPU from /proc/schedstat"),
    Declaration("selinux", "agent.collectors.selinux",
                help="SELinux status and enforcement modes"),
    Declaration("slabinfo", "agent.collectors.slabinfo", SlabinfoSettings, default=False,
                help="kernel slab allocator statistics from /proc/slabinfo"),
    Declaration("sockstat", "agent.collectors.sockstat", help="socket statistics"),
    Declaration("softirqs", "agent.collectors.softirqs", default=False,
                help="softirq counts per CPU from /proc/softirqs"),
    Declaration("softnet", "agent.collectors.softnet", help="softnet statistics"),
    Declaration("stat", "agent.collectors.system:create_stat", StatSettings,
                help="kernel statistics from /proc/stat (boot time, forks, interrupts)"),
    Declaration("sysctl", "agent.collectors.sysctl", SysctlSettings, default=False,
                help="chosen /proc/sys values"),
    Declaration("systemd", "agent.collectors.systemd", SystemdSettings, default=False,
                help="service and system status from systemd over D-Bus"),
    Declaration("tapestats", "agent.collectors.tapestats", TapestatsSettings,
                help="SCSI tape drive I/O statistics from /sys/class/scsi_tape"),
    Declaration("tcpstat", "agent.collectors.tcpstat", default=False,
                help="TCP connections by state, and queued bytes, over netlink (sock_diag)"),
    Declaration("textfile", "agent.collectors.textfile", TextfileSettings,
                help="metrics from *.prom files in a directory"),
    Declaration("thermal_zone", "agent.collectors.thermal_zone",
                help="thermal zone temperatures and cooling devices from /sys/class/thermal"),
    Declaration("time", "agent.collectors.system:create_time",
                help="the current system time and clock sources"),
    Declaration("timex", "agent.collectors.timex", help="adjtimex clock state"),
    Declaration("udp_queues", "agent.collectors.udp_queues", help="UDP queue lengths"),
    Declaration("uname", "agent.collectors.system:create_uname",
                help="system information from uname"),
    Declaration("vmstat", "agent.collectors.vmstat", VmstatSettings,
                help="statistics from /proc/vmstat"),
    Declaration("watchdog", "agent.collectors.watchdog",
                help="watchdog devices from /sys/class/watchdog"),
    Declaration("wifi", "agent.collectors.wifi", WifiSettings, default=False,
                help="WiFi interface, BSS and station statistics over nl80211"),
    Declaration("xfrm", "agent.collectors.xfrm", default=False,
                help="IPsec transformation error counters from /proc/net/xfrm_stat"),
    Declaration("xfs", "agent.collectors.xfs",
                help="XFS runtime statistics per filesystem from /sys/fs/xfs"),
    Declaration("zfs", "agent.collectors.zfs",
                help="ZFS statistics, pool I/O, dataset I/O and pool state from "
                     "/proc/spl/kstat/zfs"),
    Declaration("zoneinfo", "agent.collectors.zoneinfo", default=False,
                help="memory zone statistics per NUMA node from /proc/zoneinfo"),
    Declaration("process_groups", "agent.collectors.process_groups", ProcessGroupsSettings,
                default=False, node_exporter=False,
                help="processes by group (process-exporter's namedprocess_namegroup_* series), "
                     "per systemd service accounting and the top CPU and memory consumers"),
    Declaration("runtime", "agent.collectors.runtime", node_exporter=False,
                help="the agent's own event-loop lag, GC pauses, tasks and threads"),
)

BY_NAME: dict[str, Declaration] = {d.name: d for d in DECLARATIONS}

# Names earlier versions of hostagent used, each standing for these collectors (YAML keys and
# --collector.NAME flags).
ALIASES: dict[str, tuple[str, ...]] = {
    "memory": ("meminfo",),
    "load": ("loadavg",),
    "system": ("stat", "time", "uname", "os", "filefd", "pressure"),
}
