"""GET /: the status page for a human. Server-side HTML with inline SVG charts: no script, no
external asset, so it works offline and behind any proxy; it refreshes itself."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from html import escape
from typing import Any

from agent import __version__
from agent.exposition.status import human_duration
from agent.history import HOST_CHARTS, Chart, History

REFRESH_SECONDS = 15

_STYLE = """
*{box-sizing:border-box}
body{font-family:system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:.8rem 1.5rem}
header h1{margin:0;font-size:1.3rem}header h1 small{font-weight:normal;color:#aeb6c4}
header p{margin:.3rem 0 0;color:#d5dae3;font-size:.9rem}
header code{color:#fff}
main{padding:1rem 1.5rem}
h2{font-size:1.05rem;margin:1.2rem 0 .5rem}
.badge{display:inline-block;padding:.05rem .5rem;border-radius:.6rem;font-weight:bold}
.ok{color:#17702a}.bad{color:#b00020;font-weight:bold}.muted{color:#6b7280}
header .badge.ok{background:#17702a;color:#fff}header .badge.bad{background:#b00020;color:#fff}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:.8rem}
.card{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:.5rem .7rem}
.card h3{margin:0;font-size:.85rem;font-weight:600;display:flex;justify-content:space-between}
.card h3 span{font-weight:normal}
.card svg{width:100%;height:70px;display:block;margin-top:.3rem}
.chart polyline{fill:none;stroke:#2563eb;stroke-width:1.5;vector-effect:non-scaling-stroke}
.chart line{stroke:#e5e7eb;vector-effect:non-scaling-stroke}
.axis{font-size:.7rem;color:#6b7280;display:flex;justify-content:space-between}
table{border-collapse:collapse;background:#fff;font-size:.85rem}
th,td{border:1px solid #dde1e7;padding:.25rem .55rem;text-align:left;vertical-align:middle}
th{background:#eef0f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
td svg{width:120px;height:18px;display:block}
.spark polyline{fill:none;stroke:#6b7280;stroke-width:1;vector-effect:non-scaling-stroke}
footer{padding:0 1.5rem 1.5rem;font-size:.85rem}
"""


@dataclass(frozen=True)
class Rule:
    name: str
    target: str
    condition: float | None  # 1 holds, 0 clear, None not evaluated yet
    actions: int


@dataclass(frozen=True)
class PageFacts:
    """What the page shows beyond /health's report; the agent fills it per request."""

    hostname: str = ""
    addresses: list[str] = field(default_factory=list)
    config_file: str | None = None
    reload_ok: bool = True
    reload_time: float | None = None
    series: dict[str, int] = field(default_factory=dict)  # per collector
    rules: list[Rule] = field(default_factory=list)
    remediation_enabled: bool = True
    history: History | None = None
    metrics_path: str = "/metrics"


def _age(seconds: float) -> str:
    """Ages and uptimes: seconds below a minute, then the two largest units."""
    if seconds < 60:
        return human_duration(seconds)
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} d {hours} h"
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {secs} s"


def _number(value: float, unit: str) -> str:
    if math.isnan(value):
        return "-"
    if unit == "%":
        return f"{value:.1f} %"
    if unit == "bytes/s":
        for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if value >= scale:
                return f"{value / scale:.3g} {prefix}B/s"
        return f"{value:.0f} B/s"
    return f"{value:.2f}"


def _polylines(values: list[float], width: float, height: float, top: float) -> tuple[str, int]:
    """SVG polylines through the points (a NaN breaks the line) and how many points were drawn.
    x spans the history's capacity-independent width; y is scaled to [0, top]."""
    if not values:
        return "", 0
    step = width / max(len(values) - 1, 1)
    runs: list[list[str]] = [[]]
    drawn = 0
    for i, value in enumerate(values):
        if math.isnan(value):
            if runs[-1]:
                runs.append([])
            continue
        y = height - (min(value, top) / top) * height if top > 0 else height
        runs[-1].append(f"{i * step:.1f},{y:.1f}")
        drawn += 1
    lines = "".join(f'<polyline points="{" ".join(run)}"/>' for run in runs if run)
    return lines, drawn


def _chart(chart: Chart, values: list[float], span: str) -> str:
    finite = [v for v in values if not math.isnan(v)]
    top = 100.0 if chart.unit == "%" else max(finite, default=0.0) * 1.1 or 1.0
    lines, drawn = _polylines(values, 300, 70, top)
    current = _number(finite[-1], chart.unit) if finite else "-"
    peak = _number(max(finite), chart.unit) if finite else "-"
    return (f'<div class="card" data-chart="{chart.key}"><h3>{escape(chart.title)}'
            f'<span class="value">{escape(current)}</span></h3>'
            f'<svg class="chart" data-points="{drawn}" viewBox="0 0 300 70" '
            f'preserveAspectRatio="none"><line x1="0" y1="69.5" x2="300" y2="69.5"/>'
            f'{lines}</svg>'
            f'<div class="axis"><span>{escape(span)}</span><span>peak {escape(peak)}</span>'
            f'</div></div>')


SPARK_POINTS = 60  # a sparkline is 120 px wide: more points would not show, only cost


def _buckets(values: list[float], most: int) -> list[float]:
    """At most `most` points, each the largest of its bucket (a spike stays visible)."""
    size = -(-len(values) // most)
    if size <= 1:
        return values
    out = []
    for start in range(0, len(values), size):
        finite = [v for v in values[start:start + size] if not math.isnan(v)]
        out.append(max(finite) if finite else math.nan)
    return out


def _spark(values: list[float]) -> str:
    values = _buckets(values, SPARK_POINTS)
    finite = [v for v in values if not math.isnan(v)]
    lines, drawn = _polylines(values, 120, 18, max(finite, default=0.0) * 1.1 or 1.0)
    return (f'<svg class="spark" data-points="{drawn}" viewBox="0 0 120 18" '
            f'preserveAspectRatio="none">{lines}</svg>')


def _charts(history: History | None) -> str:
    if history is None or not len(history.times):
        return '<p class="muted">Charts appear after the first samples.</p>'
    times = history.times.values()
    span = f"last {_age(times[-1] - times[0])}" if len(times) > 1 else "first sample"
    cards = "".join(_chart(chart, history.host[chart.key].values(), span)
                    for chart in HOST_CHARTS)
    return f'<div class="charts" id="charts" data-samples="{len(times)}">{cards}</div>'


def _collector_rows(report: dict[str, Any], facts: PageFacts) -> str:
    rows = []
    durations = facts.history.durations if facts.history else {}
    for name, info in sorted(report["collectors"].items()):
        state = {True: "ok", False: "failing", None: "pending"}[info["success"]]
        if info["stale"]:
            state += ", stale"
        css = "ok" if state == "ok" else "bad"
        duration = info["last_duration_seconds"]
        age = info["last_success_age_seconds"]
        series = facts.series.get(name)
        ring = durations.get(name)
        rows.append(
            f'<tr data-collector="{escape(name)}"><td>{escape(name)}</td>'
            f'<td class="{css}">{state}</td><td class="num">{info["interval_seconds"]:g} s</td>'
            f'<td class="num">{"-" if duration is None else escape(human_duration(duration))}'
            f'</td><td>{_spark(ring.values()) if ring else ""}</td>'
            f'<td class="num">{"-" if age is None else escape(_age(age))}</td>'
            f'<td class="num">{"-" if series is None else series}</td>'
            f'<td>{escape(info["last_error"] or "")}</td></tr>')
    return "".join(rows)


def _disabled(names: list[str]) -> str:
    if not names:
        return "none"
    return ", ".join(f'<span data-disabled="{escape(name)}">{escape(name)}</span>'
                     for name in sorted(names))


def _remote_write(report: dict[str, Any]) -> str:
    queues = report.get("remote_write")
    if not queues:
        return ""
    rows = []
    for name, queue in sorted(queues.items()):
        failing = queue.get("failing_seconds")
        state = "ok" if failing is None else f"failing for {_age(failing)}"
        css = "ok" if queue.get("healthy") and failing is None else "bad"
        rows.append(f'<tr data-queue="{escape(name)}"><td>{escape(name)}</td>'
                    f'<td>{escape(str(queue.get("url", "")))}</td>'
                    f'<td class="{css}">{escape(state)}</td>'
                    f'<td class="num">{escape(str(queue.get("samples_pending", "-")))}</td>'
                    f'<td>{escape(str(queue.get("last_error") or ""))}</td></tr>')
    return ('<h2>Remote write queues</h2><table id="remote-write"><thead><tr><th>queue</th>'
            '<th>URL</th><th>state</th><th>samples pending</th><th>last error</th></tr>'
            f'</thead><tbody>{"".join(rows)}</tbody></table>')


def _rules(facts: PageFacts) -> str:
    if not facts.rules:
        return ""
    rows = []
    for rule in facts.rules:
        condition = {None: "not evaluated yet", 1.0: "holds", 0.0: "clear"}.get(
            rule.condition, "holds")
        css = "bad" if condition == "holds" else "ok"
        rows.append(f'<tr data-rule="{escape(rule.name)}"><td>{escape(rule.name)}</td>'
                    f'<td>{escape(rule.target)}</td><td class="{css}">{condition}</td>'
                    f'<td class="num">{rule.actions}</td></tr>')
    off = "" if facts.remediation_enabled else ' <span class="bad">(switched off)</span>'
    return (f'<h2>Self-healing rules{off}</h2><table id="rules"><thead><tr><th>rule</th>'
            '<th>target</th><th>condition</th><th>actions run</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def render_status_page(report: dict[str, Any], disabled: list[str],
                       ssh: tuple[int, int] | None = None,
                       facts: PageFacts | None = None) -> str:
    """report is /health's body; ssh is (targets up, targets total) when the worker runs."""
    facts = facts or PageFacts()
    status = report["status"]
    status_class = "ok" if status == "ok" else "bad"
    host = escape(facts.hostname) if facts.hostname else "this host"
    addresses = ", ".join(facts.addresses) or "-"
    config = (f"<code>{escape(facts.config_file)}</code>" if facts.config_file
              else "built-in defaults")
    if facts.reload_ok:
        loaded = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(facts.reload_time)) \
            if facts.reload_time else "-"
        reload_line = f"configuration loaded {loaded}"
    else:
        reload_line = '<span class="badge bad">last reload failed</span> (running the previous one)'
    ssh_line = (f"SSH targets up: {ssh[0]} of {ssh[1]}" if ssh is not None
                else "SSH targets: not configured")
    failing = sum(1 for info in report["collectors"].values() if info["success"] is False)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{host} · hostagent</title>
<style>{_STYLE}</style></head>
<body>
<header>
<h1>{host} <small>hostagent {escape(__version__)}</small></h1>
<p><span id="status" class="badge {status_class}">{escape(status)}</span> ·
up <span id="uptime">{escape(_age(report["uptime_seconds"]))}</span> ·
listening on <code id="addresses">{escape(addresses)}</code> ·
config <span id="config">{config}</span> · <span id="reload">{reload_line}</span></p>
</header>
<main>
<h2>This host</h2>
{_charts(facts.history)}
<h2>Collectors <span class="muted">({len(report["collectors"])} enabled, {failing} failing,
{len(disabled)} disabled)</span></h2>
<table id="collectors">
<thead><tr><th>collector</th><th>state</th><th>interval</th>
<th>last duration</th><th>duration over time</th><th>last success</th><th>series</th>
<th>last error</th></tr></thead>
<tbody>
{_collector_rows(report, facts)}
</tbody></table>
<p id="disabled" class="muted">Disabled: {_disabled(disabled)}</p>
<h2>Remote hosts</h2>
<p id="ssh">{ssh_line}</p>
{_remote_write(report)}
{_rules(facts)}
</main>
<footer><a href="{escape(facts.metrics_path)}">{escape(facts.metrics_path)}</a> ·
<a href="/health">/health</a> (this page as JSON) ·
<a href="/-/ready">/-/ready</a> · <a href="/-/healthy">/-/healthy</a> ·
refreshes every {REFRESH_SECONDS} s · flags: <code>hostagent run --help</code></footer>
</body></html>
"""
