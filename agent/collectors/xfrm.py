"""xfrm: node_xfrm_*_packets_total from /proc/net/xfrm_stat (IPsec transformation errors), as
node_exporter's xfrm collector (off by default). A kernel without CONFIG_XFRM_STATISTICS has
no file: no data."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import CounterMetricFamily, Metric

from agent.collectors.common import go_order

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

# kernel counter -> (metric name, help), as node_exporter; counters a newer kernel adds are
# not exported, as there.
COUNTERS: dict[str, tuple[str, str]] = {
    "XfrmInError": ("in_error_packets", "All errors not matched by other"),
    "XfrmInBufferError": ("in_buffer_error_packets", "No buffer is left"),
    "XfrmInHdrError": ("in_hdr_error_packets", "Header error"),
    "XfrmInNoStates": ("in_no_states_packets", "No state is found i.e. Either inbound SPI, "
                       "address, or IPsec protocol at SA is wrong"),
    "XfrmInStateProtoError": ("in_state_proto_error_packets", "Transformation protocol "
                              "specific error e.g. SA key is wrong"),
    "XfrmInStateModeError": ("in_state_mode_error_packets",
                             "Transformation mode specific error"),
    "XfrmInStateSeqError": ("in_state_seq_error_packets",
                            "Sequence error i.e. Sequence number is out of window"),
    "XfrmInStateExpired": ("in_state_expired_packets", "State is expired"),
    "XfrmInStateMismatch": ("in_state_mismatch_packets", "State has mismatch option e.g. UDP "
                            "encapsulation type is mismatch"),
    "XfrmInStateInvalid": ("in_state_invalid_packets", "State is invalid"),
    "XfrmInTmplMismatch": ("in_tmpl_mismatch_packets", "No matching template for states e.g. "
                           "Inbound SAs are correct but SP rule is wrong"),
    "XfrmInNoPols": ("in_no_pols_packets", "No policy is found for states e.g. Inbound SAs "
                     "are correct but no SP is found"),
    "XfrmInPolBlock": ("in_pol_block_packets", "Policy discards"),
    "XfrmInPolError": ("in_pol_error_packets", "Policy error"),
    "XfrmOutError": ("out_error_packets", "All errors which is not matched others"),
    "XfrmOutBundleGenError": ("out_bundle_gen_error_packets", "Bundle generation error"),
    "XfrmOutBundleCheckError": ("out_bundle_check_error_packets", "Bundle check error"),
    "XfrmOutNoStates": ("out_no_states_packets", "No state is found"),
    "XfrmOutStateProtoError": ("out_state_proto_error_packets",
                               "Transformation protocol specific error"),
    "XfrmOutStateModeError": ("out_state_mode_error_packets",
                              "Transformation mode specific error"),
    "XfrmOutStateSeqError": ("out_state_seq_error_packets",
                             "Sequence error i.e. Sequence number overflow"),
    "XfrmOutStateExpired": ("out_state_expired_packets", "State is expired"),
    "XfrmOutPolBlock": ("out_pol_block_packets", "Policy discards"),
    "XfrmOutPolDead": ("out_pol_dead_packets", "Policy is dead"),
    "XfrmOutPolError": ("out_pol_error_packets", "Policy error"),
    "XfrmFwdHdrError": ("fwd_hdr_error_packets", "Forward routing of a packet is not allowed"),
    "XfrmOutStateInvalid": ("out_state_invalid_packets", "State is invalid, perhaps expired"),
    "XfrmAcquireError": ("acquire_error_packets",
                         "State hasn\N{RIGHT SINGLE QUOTATION MARK}t been fully acquired "
                         "before use"),
}


def parse_xfrm_stat(text: str) -> dict[str, int]:
    """Lines "XfrmInError  0"; counters the file lacks are 0, as in procfs."""
    values = dict.fromkeys(COUNTERS, 0)
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(f"invalid line in xfrm_stat: {line!r}")
        try:
            value = int(fields[1])
        except ValueError:
            raise ValueError(f"invalid value in xfrm_stat: {line!r}") from None
        if fields[0] in values:
            values[fields[0]] = value
    return values


def xfrm_families(values: dict[str, int]) -> list[Metric]:
    families: list[Metric] = []
    for counter, (name, help_text) in COUNTERS.items():
        family = CounterMetricFamily(f"node_xfrm_{name}", help_text)
        family.add_metric([], float(values[counter]))
        families.append(family)
    return go_order(families)


class XfrmCollector:
    def __init__(self, procfs: Path) -> None:
        self._path = procfs / "net/xfrm_stat"

    def collect(self) -> list[Metric]:
        try:
            text = self._path.read_text()
        except FileNotFoundError:
            return []
        return xfrm_families(parse_xfrm_stat(text))


def create(context: Context, settings: Any) -> XfrmCollector:
    return XfrmCollector(context.procfs)
