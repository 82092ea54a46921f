from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric
from pydantic import ValidationError

from agent.collectors.catalog import IpvsSettings
from agent.collectors.ipvs import IpvsCollector, parse_ip_port, parse_ip_vs
from tests.golden import FIXTURES, assert_golden

PROC = FIXTURES / "ipvs" / "proc"


def samples(families: list[Metric], name: str) -> list[tuple[dict[str, str], float]]:
    return [(s.labels, s.value) for f in families for s in f.samples if s.name == name]


def test_golden() -> None:
    families = IpvsCollector(PROC).collect()
    totals = {s.name: s.value for f in families for s in f.samples if not s.labels}
    assert totals == {
        "node_ipvs_connections_total": 23765872, "node_ipvs_incoming_packets_total": 3811989221,
        "node_ipvs_outgoing_packets_total": 0, "node_ipvs_incoming_bytes_total": 89991519156915,
        "node_ipvs_outgoing_bytes_total": 0}
    active = samples(families, "node_ipvs_backend_connections_active")
    assert len(active) == 13
    assert ({"local_address": "", "local_port": "0", "remote_address": "192.168.50.26",
             "remote_port": "3306", "proto": "FWM", "local_mark": "10001000"}, 0) in active
    assert ({"local_address": "2620::1", "local_port": "80", "remote_address": "2620::4",
             "remote_port": "80", "proto": "TCP", "local_mark": ""}, 1) in active
    assert_golden(families, "ipvs")


def test_backends_sum_over_the_configured_labels() -> None:
    families = IpvsCollector(PROC, "local_port").collect()
    assert samples(families, "node_ipvs_backend_connections_active") == [
        ({"local_port": "0"}, 0), ({"local_port": "3306"}, 3741), ({"local_port": "80"}, 1)]
    assert samples(families, "node_ipvs_backend_weight")[1] == ({"local_port": "3306"}, 600)
    families = IpvsCollector(PROC, "").collect()
    assert samples(families, "node_ipvs_backend_connections_inactive") == [({}, 9)]
    # The flag's order does not matter: node_exporter's order is kept.
    families = IpvsCollector(PROC, "local_port,local_address").collect()
    assert list(samples(families, "node_ipvs_backend_weight")[0][0]) == [
        "local_address", "local_port"]


def test_unknown_labels_are_rejected() -> None:
    with pytest.raises(ValidationError, match="unknown IPVS backend labels: 'nope'"):
        IpvsSettings(backend_labels="local_port,nope")


def test_addresses() -> None:
    assert parse_ip_port("C0A80016:0CEA") == ("192.168.0.22", 3306)
    mapped = "[0000:0000:0000:0000:0000:ffff:c0a8:0001]:0050"
    assert parse_ip_port(mapped) == ("192.168.0.1", 80)
    with pytest.raises(ValueError, match="unexpected"):
        parse_ip_port("C0A8:0CEA")
    assert parse_ip_vs("SCTP  C0A80016:0CEA wlc\n") == []


def test_no_ip_vs_module_means_no_series(tmp_path: Path) -> None:
    assert IpvsCollector(tmp_path).collect() == []


@pytest.mark.parametrize("labels", ["local_address,local_port,remote_address,remote_port,"
                                    "proto,local_mark", "local_port,proto"])
def test_matches_node_exporter_on_the_fixture(node_exporter, labels: str) -> None:  # type: ignore[no-untyped-def]
    from agent.config import Config
    from tests.test_differential import compare

    url = node_exporter("--collector.disable-defaults", "--collector.ipvs",
                        f"--collector.ipvs.backend-labels={labels}", f"--path.procfs={PROC}")
    config = Config.model_validate({"paths": {"procfs": str(PROC)},
                                    "collectors": {"ipvs": {"backend_labels": labels}}})
    compare("ipvs", config, url)
