"""The remote write 1.0 wire format: protobuf WriteRequest (compiled from remote.proto),
snappy block compression (cramjam), and the headers the specification requires."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from types import ModuleType
from typing import Any

import cramjam

from agent import __version__

PROTOCOL_VERSION = "0.1.0"
HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "User-Agent": f"hostagent/{__version__}",
    "X-Prometheus-Remote-Write-Version": PROTOCOL_VERSION,
}


def _load() -> ModuleType:
    try:
        return importlib.import_module("agent.remote_write.remote_pb2")
    except ImportError:
        # A source checkout that was never built: compile the .proto now.
        from agent.remote_write import protobuild

        protobuild.generate()
        return importlib.import_module("agent.remote_write.remote_pb2")


pb: Any = _load()

# prometheus_client family types -> MetricMetadata.MetricType, as Prometheus's scrape parser
# reports them (a prometheus_client "unknown" family is exposed untyped).
_TYPES = {"counter": "COUNTER", "gauge": "GAUGE", "histogram": "HISTOGRAM",
          "gaugehistogram": "GAUGEHISTOGRAM", "summary": "SUMMARY", "info": "INFO",
          "stateset": "STATESET", "unknown": "UNKNOWN", "untyped": "UNKNOWN"}


def encode_metadata(entries: Iterable[tuple[str, str, str, str]]) -> bytes:
    """A WriteRequest of (family name, type, help, unit) entries only, as Prometheus sends
    metadata: in requests of its own, apart from samples."""
    request = pb.WriteRequest()
    for name, kind, help_text, unit in entries:
        request.metadata.append(pb.MetricMetadata(
            type=pb.MetricMetadata.MetricType.Value(_TYPES.get(kind, "UNKNOWN")),
            metric_family_name=name, help=help_text, unit=unit))
    data: bytes = request.SerializeToString()
    return data


def decode(data: bytes) -> Any:
    """A WriteRequest from its serialized bytes (tests and fault tooling)."""
    request = pb.WriteRequest()
    request.ParseFromString(data)
    return request


def compress(data: bytes) -> bytes:
    return bytes(cramjam.snappy.compress_raw(data))


def decompress(data: bytes) -> bytes:
    return bytes(cramjam.snappy.decompress_raw(data))
