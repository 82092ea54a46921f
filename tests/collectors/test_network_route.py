from __future__ import annotations

import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from agent.collectors.network_route import Route, parse_route, route_families
from tests.conftest import require_tool
from tests.golden import assert_golden

ROOT = Path(__file__).resolve().parents[2]


def attr(kind: int, value: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(value), kind) + value.ljust((len(value) + 3) & ~3, b"\0")


def route_message(family: int, dst_len: int, protocol: int, kind: int, *attrs: bytes) -> bytes:
    return struct.pack("=BBBBBBBBI", family, dst_len, 0, 0, 254, protocol, 0, kind, 0) + \
        b"".join(attrs)


def v4(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET, text)


def test_single_path_route() -> None:
    message = route_message(socket.AF_INET, 24, 4, 1, attr(1, v4("10.8.0.0")),
                            attr(6, struct.pack("=I", 5)), attr(7, v4("10.9.0.1")),
                            attr(5, v4("10.9.0.254")), attr(4, struct.pack("=I", 3)))
    assert parse_route(message) == [Route(3, "10.9.0.1", "10.8.0.0/24", "10.9.0.254", 5, 4, "")]


def test_default_route_and_non_unicast() -> None:
    default = route_message(socket.AF_INET6, 0, 3, 1, attr(
        5, socket.inet_pton(socket.AF_INET6, "fd00::1")), attr(4, struct.pack("=I", 2)))
    assert parse_route(default) == [Route(2, "", "default", "fd00::1", 0, 3, "")]
    local = route_message(socket.AF_INET, 32, 2, 2, attr(1, v4("127.0.0.1")))
    assert parse_route(local) == []


def test_multipath_route_gives_a_series_per_hop_with_weight() -> None:
    hops = b""
    for gateway, weight, index in (("10.9.0.2", 2, 1), ("10.9.0.3", 1, 4)):
        body = attr(5, v4(gateway))
        hops += struct.pack("=HBBi", 8 + len(body), 0, weight - 1, index) + body
    message = route_message(socket.AF_INET, 16, 4, 1, attr(1, v4("10.7.0.0")), attr(9, hops))
    assert parse_route(message) == [
        Route(1, "", "10.7.0.0/16", "10.9.0.2", 0, 4, "2"),
        Route(4, "", "10.7.0.0/16", "10.9.0.3", 0, 4, "1")]


def test_golden() -> None:
    routes = [Route(2, "", "default", "192.0.2.1", 0, 4, ""),
              Route(2, "192.0.2.2", "192.0.2.0/24", "", 0, 2, ""),
              Route(1, "", "10.7.0.0/16", "10.9.0.2", 0, 186, "2"),
              Route(2, "", "10.7.0.0/16", "10.9.0.3", 0, 186, "1"),
              Route(9, "", "10.6.0.0/16", "", 100, 99, "")]
    families = route_families(routes, {1: "lo", 2: "eth0"})
    assert_golden(families, "network_route")


NAMESPACE_SCRIPT = """
import subprocess, sys
sys.path.insert(0, sys.argv[1])
def ip(*args):
    subprocess.run(["ip", *args], check=True)
ip("link", "set", "lo", "up")
ip("addr", "add", "10.9.0.1/24", "dev", "lo")
ip("route", "add", "10.8.0.0/16", "via", "10.9.0.2", "dev", "lo", "metric", "5",
   "proto", "static")
ip("route", "add", "10.7.0.0/16", "nexthop", "via", "10.9.0.2", "dev", "lo", "weight", "2",
   "nexthop", "via", "10.9.0.3", "dev", "lo", "weight", "1")
from agent.collectors.network_route import NetworkRouteCollector
from agent.exposition.formats import TEXT, encode
sys.stdout.write(encode(NetworkRouteCollector().collect(), TEXT).decode())
"""


def test_live_in_a_network_namespace() -> None:
    require_tool("ip")
    done = subprocess.run([require_tool("unshare"), "-n", sys.executable, "-c",
                           NAMESPACE_SCRIPT, str(ROOT)], capture_output=True, text=True, timeout=30)
    if done.returncode and "Operation not permitted" in done.stderr:
        pytest.skip("no permission to create a network namespace")
    assert done.returncode == 0, done.stderr
    lines = set(done.stdout.splitlines())
    assert 'node_network_route_info{dest="10.8.0.0/16",device="lo",gw="10.9.0.2",priority="5",' \
           'proto="static",src="",weight=""} 1' in lines
    assert 'node_network_route_info{dest="10.7.0.0/16",device="lo",gw="10.9.0.3",priority="0",' \
           'proto="boot",src="",weight="1"} 1' in lines
    # Every route on lo counted, whatever IPv6 routes this kernel adds to the namespace.
    on_lo = sum(1 for line in lines if line.startswith("node_network_route_info{")
                and 'device="lo"' in line)
    assert on_lo >= 3
    assert f'node_network_routes{{device="lo"}} {on_lo}' in lines
