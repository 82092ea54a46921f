"""GET / in a real headless Chromium: the page loads from the running agent; its header names
the host, address and configuration file; its charts draw one point per history sample; the
collector table has one row per collector with useful durations; and the screenshot (kept as a
test artifact) is judged by its pixels: the charts' and the status's colours."""

from __future__ import annotations

import os
import re
import socket
import struct
import subprocess
import time
import urllib.request
import zlib
from pathlib import Path

from tests.conftest import require_tool
from tests.test_process import AgentProcess

ARTIFACTS = Path(os.environ.get("HOSTAGENT_ARTIFACTS", Path(__file__).parent.parent / "artifacts"))


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    # Flags for a root sandbox without network beyond loopback (see the machine's notes).
    return subprocess.run(
        [require_tool("chromium"), "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120)


def read_png(data: bytes) -> tuple[int, int, list[tuple[int, int, int]]]:
    """Width, height and RGB pixels of an 8-bit, non-interlaced RGB or RGBA PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = chunk
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and color in (2, 6) and interlace == 0
    bpp = 3 if color == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    previous, pixels = bytearray(stride), []
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = previous[i], previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        pixels += [tuple(line[x:x + 3]) for x in range(0, stride, bpp)]
        previous = line
    return width, height, pixels  # type: ignore[return-value]


def count(pixels: list[tuple[int, int, int]], rgb: tuple[int, int, int], within: int = 40) -> int:
    return sum(1 for p in pixels if all(abs(a - b) <= within for a, b in zip(p, rgb, strict=True)))


CONFIG = """
web: {listen_address: "127.0.0.1:0", status_history_step: 0.2}
collectors:
  textfile: {enabled: false}
  cpu: {interval: 0.5}
  meminfo: {interval: 0.5}
remediation:
  dry_run: true
  rules:
    - name: load-seen
      condition: {metric: 'node_load1 >= 0'}
      tiers: [{command: ["true"]}]
"""
SAMPLES = 8


def wait_for_samples(agent: AgentProcess, wanted: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    samples = 0
    while time.monotonic() < deadline:
        page = agent.get("/")[1].decode()
        found = re.search(r'data-samples="(\d+)"', page)
        samples = int(found.group(1)) if found else 0
        if samples >= wanted:
            return
        time.sleep(0.1)
    raise AssertionError(f"{samples} chart samples after {timeout} s")


def chart_points(dom: str, chart: str) -> tuple[int, int]:
    """(points the chart says it drew, points in its polylines)."""
    card = re.search(rf'data-chart="{chart}".*?</svg>', dom, re.S)
    assert card, chart
    said = int(re.search(r'data-points="(\d+)"', card.group(0)).group(1))  # type: ignore[union-attr]
    drawn = sum(len(p.split()) for p in re.findall(r'<polyline points="([^"]*)"', card.group(0)))
    return said, drawn


def test_status_page_in_headless_chromium(tmp_path: Path) -> None:
    config = tmp_path / "hostagent.yml"
    config.write_text(CONFIG)
    agent = AgentProcess("--config", str(config))
    try:
        agent.wait_ready()
        url = f"http://{agent.address}/"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.headers["Content-Type"].startswith("text/html")
        wait_for_samples(agent, SAMPLES)
        dom = chromium("--dump-dom", url, profile=tmp_path / "profile").stdout
        # Header: which host, where it listens, which file, and that it refreshes itself.
        header = re.search(r"<header>(.*?)</header>", dom, re.S).group(1)  # type: ignore[union-attr]
        assert socket.gethostname() in header and agent.address in header
        assert str(config) in header and "configuration loaded" in header
        assert re.search(r'http-equiv="refresh" content="\d+"', dom)
        assert re.search(r'id="status" class="badge ok">ok<', dom)
        # Charts: one point per sample for a gauge, one less for a rate (it needs two).
        samples = int(re.search(r'data-samples="(\d+)"', dom).group(1))  # type: ignore[union-attr]
        assert samples >= SAMPLES
        for chart in ("cpu", "memory", "load", "disk", "network", "filesystem"):
            said, drawn = chart_points(dom, chart)
            assert said == drawn, chart
        assert chart_points(dom, "memory")[1] == samples
        assert chart_points(dom, "load")[1] == samples
        assert 1 <= chart_points(dom, "cpu")[1] <= samples - 1
        cpu_value = re.search(r'data-chart="cpu"><h3>[^<]*<span class="value">([^<]+)<', dom)
        assert cpu_value and re.fullmatch(r"\d+\.\d %", cpu_value.group(1)), cpu_value
        # Collectors: state, a duration in a fitting unit, a sparkline of every sample, series.
        row = r'<tr data-collector="(\w+)"><td>\w+</td><td[^>]*>([^<]+)'
        by_name = dict(re.findall(row, dom))
        assert by_name["cpu"] == "ok" and len(by_name) >= 19
        disabled = re.findall(r'data-disabled="(\w+)"', dom)
        assert "textfile" in disabled and not set(disabled) & set(by_name)
        cpu_row = re.search(r'<tr data-collector="cpu">(.*?)</tr>', dom).group(1)  # type: ignore[union-attr]
        assert re.search(r">\d+(\.\d+)? (µs|ms|s)</td>", cpu_row), cpu_row
        spark = re.search(r'class="spark" data-points="(\d+)"', cpu_row)
        assert spark and int(spark.group(1)) == samples
        cells = re.findall(r'<td class="num">([^<]*)</td>', cpu_row)
        assert int(cells[-1]) > 0  # series of the cpu collector
        assert re.search(r'<tr data-rule="load-seen"><td>load-seen</td><td>local</td>', dom)
        for link in ("/metrics", "/health", "/-/ready"):
            assert f'href="{link}"' in dom
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "status-page.png"
        shot.unlink(missing_ok=True)
        height = 900 + 30 * len(by_name)  # the whole page in view
        chromium(f"--screenshot={shot}", f"--window-size=1200,{height}", url,
                 profile=tmp_path / "profile")
        width, shot_height, pixels = read_png(shot.read_bytes())
        assert (width, shot_height) == (1200, height)
        # The charts' lines are drawn in the page's blue, the status badge in its green;
        # nothing is drawn in its red (the status is ok).
        blue, green = count(pixels, (37, 99, 235)), count(pixels, (23, 112, 42), 20)
        red = sum(1 for p in pixels if p[0] > p[1] + 80 and p[0] > p[2] + 80)
        assert blue > 300 and green > 100 and red == 0, (blue, green, red)
    finally:
        agent.proc.terminate()
        agent.proc.wait(timeout=15)
