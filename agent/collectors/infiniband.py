"""infiniband: node_infiniband_* from /sys/class/infiniband, as node_exporter's latest release.

Per device node_infiniband_info; per port its state, physical state and rate, the IB counters
(counters/, and counters_ext/ of kernels before 4.5) and the hw_counters/ of mlx5 and RoCE
HCAs. The data counters are per lane and multiplied by 4, as procfs does. A counter reading
"N/A (no PMA)" (iWARP) or that cannot be read is left out. A device procfs would refuse
(no fw_ver, an unreadable port state or rate, a counter that is not a number) is left out
whole, where node_exporter fails the collector; the other devices are kept.
"""

from __future__ import annotations

import errno
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent.collectors.common import Unchanged, go_order, read_attribute_bytes, read_file_bytes

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

U64 = 2**64

# (file, metric name without node_infiniband_ and _total, help); the per-lane data counters
# are multiplied by 4.
COUNTERS = (
    ("excessive_buffer_overrun_errors", "excessive_buffer_overrun_errors",
     "Number of times that OverrunErrors consecutive flow control update periods occurred, "
     "each having at least one overrun error."),
    ("link_downed", "link_downed",
     "Number of times the link failed to recover from an error state and went down"),
    ("link_error_recovery", "link_error_recovery",
     "Number of times the link successfully recovered from an error state"),
    ("local_link_integrity_errors", "local_link_integrity_errors",
     "Number of times that the count of local physical errors exceeded the threshold "
     "specified by LocalPhyErrors."),
    ("multicast_rcv_packets", "multicast_packets_received",
     "Number of multicast packets received (including errors)"),
    ("multicast_xmit_packets", "multicast_packets_transmitted",
     "Number of multicast packets transmitted (including errors)"),
    ("port_rcv_constraint_errors", "port_constraint_errors_received",
     "Number of packets received on the switch physical port that are discarded"),
    ("port_rcv_data", "port_data_received_bytes", "Number of data octets received on all links"),
    ("port_rcv_discards", "port_discards_received",
     "Number of inbound packets discarded by the port because the port is down or congested"),
    ("port_rcv_errors", "port_errors_received",
     "Number of packets containing an error that were received on this port"),
    ("port_rcv_packets", "port_packets_received",
     "Number of packets received on all VLs by this port (including errors)"),
    ("port_rcv_remote_physical_errors", "port_receive_remote_physical_errors",
     "Number of packets marked with the EBP (End of Bad Packet) delimiter received on the "
     "port."),
    ("port_rcv_switch_relay_errors", "port_receive_switch_relay_errors",
     "Number of packets that could not be forwarded by the switch."),
    ("port_xmit_constraint_errors", "port_constraint_errors_transmitted",
     "Number of packets not transmitted from the switch physical port"),
    ("port_xmit_data", "port_data_transmitted_bytes",
     "Number of data octets transmitted on all links"),
    ("port_xmit_discards", "port_discards_transmitted",
     "Number of outbound packets discarded by the port because the port is down or congested"),
    ("port_xmit_packets", "port_packets_transmitted",
     "Number of packets transmitted on all VLs from this port (including errors)"),
    ("port_xmit_wait", "port_transmit_wait",
     "Number of ticks during which the port had data to transmit but no data was sent during "
     "the entire tick"),
    ("symbol_error", "symbol_error",
     "Number of minor link errors detected on one or more physical lanes."),
    ("unicast_rcv_packets", "unicast_packets_received",
     "Number of unicast packets received (including errors)"),
    ("unicast_xmit_packets", "unicast_packets_transmitted",
     "Number of unicast packets transmitted (including errors)"),
    ("VL15_dropped", "vl15_dropped",
     "Number of incoming VL15 packets dropped due to resource limitations."),
)
COUNTERS_EXT = (
    ("port_multicast_rcv_packets", "legacy_multicast_packets_received",
     "Number of multicast packets received"),
    ("port_multicast_xmit_packets", "legacy_multicast_packets_transmitted",
     "Number of multicast packets transmitted"),
    ("port_rcv_data_64", "legacy_data_received_bytes",
     "Number of data octets received on all links"),
    ("port_rcv_packets_64", "legacy_packets_received",
     "Number of data packets received on all links"),
    ("port_unicast_rcv_packets", "legacy_unicast_packets_received",
     "Number of unicast packets received"),
    ("port_unicast_xmit_packets", "legacy_unicast_packets_transmitted",
     "Number of unicast packets transmitted"),
    ("port_xmit_data_64", "legacy_data_transmitted_bytes",
     "Number of data octets transmitted on all links"),
    ("port_xmit_packets_64", "legacy_packets_transmitted",
     "Number of data packets received on all links"),
)
_OFED = " The counters was added in MLNX_OFED 4.1"
_OFED5 = " The counter was added in MLNX_OFED rev 5.0-1.0.0.0 and kernel v5.6.0"
HW_COUNTERS = (
    ("duplicate_request", "duplicate_requests_packets",
     "The number of received packets. A duplicate request is a request that had been "
     "previously executed."),
    ("implied_nak_seq_err", "implied_nak_seq_errors",
     "The number of time the requested decided an ACK. with a PSN larger than the expected PSN "
     "for an RDMA read or response."),
    ("local_ack_timeout_err", "local_ack_timeout_errors",
     "The number of times QP's ack timer expired for RC, XRC, DCT QPs at the sender side. The "
     "QP retry limit was not exceed, therefore it is still recoverable error."),
    ("np_cnp_sent", "np_cnp_packets_sent",
     "The number of CNP packets sent by the Notification Point when it noticed congestion "
     "experienced in the RoCEv2 IP header (ECN bits)." + _OFED),
    ("np_ecn_marked_roce_packets", "np_ecn_marked_roce_packets_received",
     "The number of RoCEv2 packets received by the notification point which were marked for "
     "experiencing the congestion (ECN bits where '11' on the ingress RoCE traffic) ." + _OFED),
    ("out_of_buffer", "out_of_buffer_drops",
     "The number of drops occurred due to lack of WQE for the associated QPs."),
    ("out_of_sequence", "out_of_sequence_packets_received",
     "The number of out of sequence packets received."),
    ("packet_seq_err", "packet_sequence_errors",
     "The number of received NAK sequence error packets. The QP retry limit was not exceeded."),
    ("req_cqe_error", "req_cqes_errors",
     "The number of times requester detected CQEs completed with errors." + _OFED),
    ("req_cqe_flush_error", "req_cqes_flush_errors",
     "The number of times requester detected CQEs completed with flushed errors." + _OFED),
    ("req_remote_access_errors", "req_remote_access_errors",
     "The number of times requester detected remote access errors." + _OFED),
    ("req_remote_invalid_request", "req_remote_invalid_request_errors",
     "The number of times requester detected remote invalid request errors." + _OFED),
    ("resp_cqe_error", "resp_cqes_errors",
     "The number of times responder detected CQEs completed with errors." + _OFED),
    ("resp_cqe_flush_error", "resp_cqes_flush_errors",
     "The number of times responder detected CQEs completed with flushed errors." + _OFED),
    ("resp_local_length_error", "resp_local_length_errors",
     "The number of times responder detected local length errors." + _OFED),
    ("resp_remote_access_errors", "resp_remote_access_errors",
     "The number of times responder detected remote access errors." + _OFED),
    ("rnr_nak_retry_err", "rnr_nak_retry_packets_received",
     "The number of received RNR NAK packets. The QP retry limit was not exceeded."),
    ("roce_adp_retrans", "roce_adp_retransmits",
     "The number of adaptive retransmissions for RoCE traffic." + _OFED5),
    ("roce_adp_retrans_to", "roce_adp_retransmits_timeout",
     "The number of times RoCE traffic reached timeout due to adaptive retransmission." + _OFED5),
    ("roce_slow_restart", "roce_slow_restart_used",
     "The number of times RoCE slow restart was used." + _OFED5),
    ("roce_slow_restart_cnps", "roce_slow_restart_cnps",
     "The number of times RoCE slow restart generated CNP packets." + _OFED5),
    ("roce_slow_restart_trans", "roce_slow_restart",
     "The number of times RoCE slow restart changed state to slow restart." + _OFED5),
    ("rp_cnp_handled", "rp_cnp_packets_handled",
     "The number of CNP packets handled by the Reaction Point HCA to throttle the transmission "
     "rate." + _OFED),
    ("rp_cnp_ignored", "rp_cnp_ignored_packets_received",
     "The number of CNP packets received and ignored by the Reaction Point HCA. This counter "
     "should not raise if RoCE Congestion Control was enabled in the network. If this counter "
     "raise, verify that ECN was enabled on the adapter."),
    ("rx_atomic_requests", "rx_atomic_requests",
     "The number of received ATOMIC request for the associated QPs."),
    ("rx_dct_connect", "rx_dct_connect_requests",
     "The number of received connection requests for the associated DCTs."),
    ("rx_icrc_encapsulated", "rx_icrc_encapsulated_errors",
     "The number of RoCE packets with ICRC errors. This counter was added in MLNX_OFED 4.4 and "
     "kernel 4.19"),
    ("rx_read_requests", "rx_read_requests",
     "The number of received READ requests for the associated QPs."),
    ("rx_write_requests", "rx_write_requests",
     "The number of received WRITE requests for the associated QPs."),
)
COUNTER_INFO = {file: (name, help_text)
                for file, name, help_text in (*COUNTERS, *COUNTERS_EXT, *HW_COUNTERS)}
PER_LANE = frozenset(("port_rcv_data", "port_xmit_data", "port_rcv_data_64", "port_xmit_data_64"))
LIFESPAN_HELP = ("The maximum period in ms which defines the aging of the counter reads. Two "
                 "consecutive reads within this period might return the same values.")
# Unreadable counter files procfs skips (write-only, unsupported, not permitted).
SKIPPED_ERRORS = frozenset((errno.ENOENT, errno.EACCES, errno.EPERM, errno.EOPNOTSUPP,
                            errno.EINVAL))

_GO_UINT = re.compile(r"0[xX][0-9a-fA-F]+|0[oO]?[0-7]+|0[bB][01]+|[1-9][0-9]*|0")
_GO_DECIMAL = re.compile(r"[0-9]+")


class DeviceError(Exception):
    """A device procfs would refuse to parse."""


@dataclass
class Port:
    number: str
    state_id: int
    phys_state_id: int
    rate: int  # bytes per second
    counters: dict[str, int] = field(default_factory=dict)  # by file name
    hw_counters: dict[str, int] = field(default_factory=dict)


@dataclass
class Device:
    name: str
    board_id: str
    firmware_version: str
    hca_type: str
    ports: list[Port]


def parse_uint(text: str) -> int | None:
    """Go's strconv.ParseUint(text, 0, 64), as procfs reads counters; None if not a number."""
    if not _GO_UINT.fullmatch(text):
        return None
    octal = len(text) > 1 and text[0] == "0" and text[1].isdigit()  # Go's "052"
    value = int(text, 8) if octal else int(text, 0)
    return value if value < U64 else None


def parse_state(text: str) -> int:
    """"4: ACTIVE" -> 4."""
    parts = text.split(":")
    number = parts[0].strip()
    if len(parts) != 2 or not _GO_DECIMAL.fullmatch(number) or int(number) >= 2**32:
        raise DeviceError(f"state {text.strip()!r}")
    return int(number)


def parse_rate(text: str) -> int:
    """"100 Gb/sec (4X EDR)" -> bytes per second; Go parses the number as a float32."""
    parts = text.split(" ", 1)
    if len(parts) != 2:
        raise DeviceError(f"rate {text.strip()!r}")
    try:
        value = float(parts[0].strip())
    except ValueError:
        raise DeviceError(f"rate {text.strip()!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise DeviceError(f"rate {text.strip()!r}")
    value = struct.unpack("f", struct.pack("f", value))[0]
    return int(value * 125000000) % U64


# Raw input: what was read, each file as its bytes or the errno reading it failed with.
Read = bytes | int
# A counters directory: errno if it could not be opened, else (file, bytes or errno) of each
# wanted file and of each file that could not be read (procfs fails on some of those).
CounterFiles = int | tuple[tuple[str, Read], ...]
# (number, state, phys_state, rate, counters/, counters_ext/, hw_counters/); None: absent.
PortRaw = tuple[str, Read, Read, Read, CounterFiles | None, CounterFiles | None,
                CounterFiles | None]
# (fw_ver, board_id, hca_type, ports: errno if unlistable).
DeviceRaw = tuple[Read, Read, Read, int | tuple[PortRaw, ...]]


def _read(path: str, whole: bool = False) -> Read:
    try:
        return read_file_bytes(path) if whole else read_attribute_bytes(path)
    except OSError as exc:
        return exc.errno or 0


def _read_counter_files(directory: str, wanted: frozenset[str]) -> CounterFiles:
    try:
        # Files opened relative to the directory: no path resolution per counter.
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        return exc.errno or 0
    files: list[tuple[str, Read]] = []
    try:
        with os.scandir(dir_fd) as scan:
            names = sorted(e.name for e in scan if e.is_file(follow_symlinks=False))
        for name in names:
            try:
                raw = read_attribute_bytes(name, dir_fd=dir_fd)
            except OSError as exc:
                files.append((name, exc.errno or 0))
                continue
            if name in wanted:
                files.append((name, raw))
    finally:
        os.close(dir_fd)
    return tuple(files)


def read_port_raw(directory: str, number: str) -> PortRaw:
    def counter_files(name: str, wanted: frozenset[str]) -> CounterFiles | None:
        path = os.path.join(directory, name)
        return _read_counter_files(path, wanted) if os.path.exists(path) else None

    counters = counter_files("counters", COUNTER_FILES)
    ext = os.path.join(directory, "counters_ext")
    return (number, _read(os.path.join(directory, "state"), whole=True),
            _read(os.path.join(directory, "phys_state"), whole=True),
            _read(os.path.join(directory, "rate"), whole=True), counters,
            _read_counter_files(ext, EXT_FILES)
            if counters is not None and os.path.isdir(ext) else None,
            counter_files("hw_counters", HW_FILES))


def read_device_raw(directory: str) -> DeviceRaw:
    ports_dir = os.path.join(directory, "ports")
    ports: int | tuple[PortRaw, ...]
    try:
        numbers = sorted(os.listdir(ports_dir))
    except OSError as exc:
        ports = exc.errno or 0
    else:
        ports = tuple(read_port_raw(os.path.join(ports_dir, n), n) for n in numbers)
    return (_read(os.path.join(directory, "fw_ver")), _read(os.path.join(directory, "board_id")),
            _read(os.path.join(directory, "hca_type")), ports)


def _text(raw: Read, name: str) -> str:
    if isinstance(raw, int):
        raise DeviceError(f"{name}: {os.strerror(raw)}")
    return raw.decode(errors="replace")


def parse_counters(files: CounterFiles) -> dict[str, int]:
    """The known counters of one counters/, counters_ext/ or hw_counters/ directory."""
    if isinstance(files, int):
        raise DeviceError(f"counters: {os.strerror(files)}")
    values: dict[str, int] = {}
    for name, raw in files:
        if isinstance(raw, int):
            if raw in SKIPPED_ERRORS:
                continue
            raise DeviceError(f"{name}: {os.strerror(raw)}")
        text = raw.decode(errors="replace").strip()
        value = parse_uint(text)
        if value is None:
            if "N/A (no PMA)" in text:
                continue
            raise DeviceError(f"{name}: {text!r}")
        values[name] = value * 4 % U64 if name in PER_LANE else value
    return values


COUNTER_FILES = frozenset(f for f, _, _ in COUNTERS)
EXT_FILES = frozenset(f for f, _, _ in COUNTERS_EXT)
HW_FILES = frozenset((*(f for f, _, _ in HW_COUNTERS), "lifespan"))


def parse_port(raw: PortRaw) -> Port:
    number, state, phys_state, rate, counters, ext, hw_counters = raw
    if not _GO_DECIMAL.fullmatch(number) or int(number) >= 2**32:
        raise DeviceError(f"port {number!r}")
    port = Port(str(int(number)), parse_state(_text(state, "state")),
                parse_state(_text(phys_state, "phys_state")), parse_rate(_text(rate, "rate")))
    if counters is not None:
        port.counters = parse_counters(counters)
        if ext is not None:
            port.counters.update(parse_counters(ext))
    if hw_counters is not None:
        port.hw_counters = parse_counters(hw_counters)
    return port


def parse_device(name: str, raw: DeviceRaw) -> Device:
    firmware, board_id, hca_type, ports = raw
    optional = {}
    for attribute, value in (("board_id", board_id), ("hca_type", hca_type)):
        optional[attribute] = "" if value == errno.ENOENT else _text(value, attribute).strip()
    firmware_text = _text(firmware, "fw_ver").strip()
    if isinstance(ports, int):
        raise DeviceError(f"ports: {os.strerror(ports)}")
    return Device(name, optional["board_id"], firmware_text, optional["hca_type"],
                  [parse_port(port) for port in ports])


def infiniband_families(devices: list[Device]) -> list[Metric]:
    labels = ["device", "port"]
    info = GaugeMetricFamily(
        "node_infiniband_info",
        "Non-numeric data from /sys/class/infiniband/<device>, value is always 1.",
        labels=["device", "board_id", "firmware_version", "hca_type"])
    state = GaugeMetricFamily(
        "node_infiniband_state_id", "State of the InfiniBand port (0: no change, 1: down, "
        "2: init, 3: armed, 4: active, 5: act defer)", labels=labels)
    phys = GaugeMetricFamily(
        "node_infiniband_physical_state_id", "Physical state of the InfiniBand port (0: no "
        "change, 1: sleep, 2: polling, 3: disable, 4: shift, 5: link up, 6: link error "
        "recover, 7: phytest)", labels=labels)
    rate = GaugeMetricFamily("node_infiniband_rate_bytes_per_second",
                             "Maximum signal transfer rate", labels=labels)
    lifespan = GaugeMetricFamily("node_infiniband_lifespan_seconds", LIFESPAN_HELP,
                                 labels=labels)
    # Families built on first sample: most ports have a few of the ~60 counters.
    counters: dict[str, CounterMetricFamily] = {}

    def counter(file: str) -> CounterMetricFamily:
        family = counters.get(file)
        if family is None:
            name, help_text = COUNTER_INFO[file]
            family = counters[file] = CounterMetricFamily(f"node_infiniband_{name}", help_text,
                                                          labels=labels)
        return family

    for device in devices:
        info.add_metric([device.name, device.board_id, device.firmware_version,
                         device.hca_type], 1.0)
        for port in device.ports:
            values = [device.name, port.number]
            state.add_metric(values, float(port.state_id))
            phys.add_metric(values, float(port.phys_state_id))
            rate.add_metric(values, float(port.rate))
            for file, value in port.counters.items():
                counter(file).add_metric(values, float(value))
            for file, value in port.hw_counters.items():
                if file == "lifespan":
                    lifespan.add_metric(values, float(value // 1000))  # ms, in whole seconds
                else:
                    counter(file).add_metric(values, float(value))
    return go_order((info, state, phys, rate, lifespan, *counters.values()))


class InfinibandCollector:
    def __init__(self, sysfs: Path) -> None:
        self._class_dir = str(sysfs / "class" / "infiniband")
        self._unchanged: Unchanged[list[Metric]] = Unchanged()

    def _read(self) -> tuple[tuple[str, DeviceRaw], ...]:
        try:
            names = sorted(os.listdir(self._class_dir))
        except OSError:
            return ()
        return tuple((name, read_device_raw(os.path.join(self._class_dir, name)))
                     for name in names)

    def collect(self) -> list[Metric]:
        raw = self._read()
        return self._unchanged.get(raw, lambda: build(raw))


def build(raw: tuple[tuple[str, DeviceRaw], ...]) -> list[Metric]:
    devices = []
    for name, device in raw:
        try:
            devices.append(parse_device(name, device))
        except DeviceError:
            continue
    return infiniband_families(devices)


def create(context: Context, settings: Any) -> InfinibandCollector:
    return InfinibandCollector(context.sysfs)
