"""The Prometheus text format (0.0.4) written as node_exporter's Go client writes it, so a
scrape reads the same bytes: label pairs sorted by name, a family's series sorted by their
label values, histograms and summaries as buckets or quantiles then _sum then _count, numbers
as Go's strconv.FormatFloat(v, 'g', -1, 64), families without samples left out."""

from __future__ import annotations

import math
from collections.abc import Iterable
from decimal import Decimal

from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample

from agent.exposition.packed import PackedFamily

TYPES = {"counter": "counter", "gauge": "gauge", "histogram": "histogram",
         "summary": "summary", "unknown": "untyped", "untyped": "untyped",
         "info": "gauge", "stateset": "gauge", "gaugehistogram": "histogram"}
_COUNTS = ("_bucket", "_count")  # integers in Go's client


def go_float(value: float) -> str:
    """strconv.FormatFloat(value, 'g', -1, 64), with expfmt's special cases."""
    if value == 1:
        return "1"
    if value == 0:
        return "0"
    if value == -1:
        return "-1"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    sign, digit_tuple, exponent = Decimal(repr(float(value))).as_tuple()
    assert isinstance(exponent, int)
    significant = "".join(map(str, digit_tuple)).lstrip("0")
    point = len(significant) + exponent  # value = 0.SIGNIFICANT x 10**point
    digits = significant.rstrip("0")
    out = "-" if sign else ""
    exp = point - 1
    if exp < -4 or exp >= 6:  # %e: shortest digits, at least two exponent digits
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{out}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        return f"{out}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{out}{digits}{'0' * (point - len(digits))}"
    return f"{out}{digits[:point]}.{digits[point:]}"


def _value(sample: Sample, family_type: str) -> str:
    value = sample.value
    if (family_type in ("histogram", "summary", "gaugehistogram")
            and sample.name.endswith(_COUNTS) and float(value).is_integer()):
        return str(int(value))
    return go_float(float(value))


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _label_value(name: str, value: str) -> str:
    if name in ("le", "quantile"):
        try:
            return go_float(float(value))
        except ValueError:
            return value
    return value


def _series_key(labels: dict[str, str]) -> tuple[str, ...]:
    return tuple(labels[name] for name in sorted(labels) if name not in ("le", "quantile"))


_SUFFIX_ORDER = {"_bucket": 0, "": 0, "_sum": 1, "_count": 2}


def _ordered(family: Metric) -> list[Sample]:
    samples = [s for s in family.samples if not s.name.endswith(("_created", "_gsum",
                                                                  "_gcount"))]
    if family.type not in ("histogram", "summary", "gaugehistogram"):
        return sorted(samples, key=lambda s: _series_key(s.labels))

    def suffix(sample: Sample) -> int:
        return _SUFFIX_ORDER.get(sample.name[len(family.name):], 0)

    # Stable sort keeps each series' buckets (quantiles) in their own order.
    return sorted(samples, key=lambda s: (_series_key(s.labels), suffix(s)))


def header_name(family: Metric) -> str:
    """The name a family's # HELP line carries, by which Go's client sorts families."""
    if isinstance(family, PackedFamily):
        return family.text_name
    if family.type == "counter" and not family.name.endswith("_total"):
        # A counter declared without the suffix (parsed, or process-exporter's) keeps it off.
        bare = bool(family.samples) and all(s.name == family.name for s in family.samples)
        return family.name if bare else family.name + "_total"
    return family.name + "_info" if family.type == "info" else family.name


def text_header(name: str, documentation: str, family_type: str) -> str:
    kind = TYPES.get(family_type, "untyped")
    return f"# HELP {name} {_escape_help(documentation)}\n# TYPE {name} {kind}\n"


def encode_text(families: Iterable[Metric]) -> bytes:
    lines: list[str] = []
    for family in families:
        samples = _ordered(family)
        if not samples:
            continue
        lines.append(text_header(header_name(family), family.documentation, family.type))
        for sample in samples:
            labels = sample.labels
            if labels:
                pairs = ",".join(f'{k}="{_escape_value(_label_value(k, labels[k]))}"'
                                 for k in sorted(labels))
                lines.append(f"{sample.name}{{{pairs}}} {_value(sample, family.type)}\n")
            else:
                lines.append(f"{sample.name} {_value(sample, family.type)}\n")
    return "".join(lines).encode()
