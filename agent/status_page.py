"""GET /: a small HTML status page for a human. Plain server-side HTML, no JavaScript."""

from __future__ import annotations

from html import escape
from typing import Any

from agent import __version__
from agent.exposition.status import human_duration

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse;margin-top:1rem}
th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}
th{background:#f3f3f3}.ok{color:#17702a}.bad{color:#b00020;font-weight:bold}
"""


def _cell(value: Any) -> str:
    if value is None:
        return "<td>-</td>"
    return f"<td>{escape(str(value))}</td>"


def _seconds(value: float | None) -> str:
    return "<td>-</td>" if value is None else f"<td>{escape(human_duration(value))}</td>"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h {minutes}m {secs}s" if days else f"{hours}h {minutes}m {secs}s"


def render_status_page(report: dict[str, Any], disabled: list[str],
                       ssh: tuple[int, int] | None = None) -> str:
    """report is /health's body; ssh is (targets up, targets total) when the worker runs."""
    status = report["status"]
    status_class = "ok" if status == "ok" else "bad"
    rows = []
    for name, info in sorted(report["collectors"].items()):
        state = {True: "ok", False: "failing", None: "pending"}[info["success"]]
        if info["stale"]:
            state += ", stale"
        css = "ok" if state == "ok" else "bad"
        rows.append(
            f'<tr data-collector="{escape(name)}"><td>{escape(name)}</td><td>yes</td>'
            f'<td class="{css}">{state}</td><td>{info["interval_seconds"]:g} s</td>'
            f'{_seconds(info["last_duration_seconds"])}'
            f'{_seconds(info["last_success_age_seconds"])}{_cell(info["last_error"])}</tr>')
    rows += [f'<tr data-collector="{escape(name)}"><td>{escape(name)}</td><td>no</td>'
             '<td>disabled</td><td>-</td><td>-</td><td>-</td><td>-</td></tr>'
             for name in sorted(disabled)]
    ssh_line = (f"<p>SSH targets up: {ssh[0]} of {ssh[1]}</p>" if ssh is not None
                else "<p>SSH targets: not configured</p>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>hostagent</title>
<style>{_STYLE}</style></head>
<body>
<h1>hostagent</h1>
<p>Version {escape(__version__)} · up {_duration(report["uptime_seconds"])} ·
status <span id="status" class="{status_class}">{escape(status)}</span></p>
{ssh_line}
<table id="collectors">
<thead><tr><th>collector</th><th>enabled</th><th>state</th><th>interval</th>
<th>last duration</th>
<th>last success, ago</th><th>last error</th></tr></thead>
<tbody>
{"".join(rows)}
</tbody></table>
<p><a href="/metrics">/metrics</a> · <a href="/health">/health</a> ·
<a href="/-/ready">/-/ready</a> · <a href="/-/healthy">/-/healthy</a> ·
documentation: README.md of the installed package</p>
</body></html>
"""
