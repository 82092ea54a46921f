"""GET / in a real headless Chromium: the page loads from the running agent, the collector
table has one row per collector with useful durations, and the screenshot (kept as a test
artifact) is judged by its pixels: the status colour and one table rule per row."""

from __future__ import annotations

import os
import re
import struct
import subprocess
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


def grey_rows(width: int, pixels: list[tuple[int, int, int]]) -> list[int]:
    """Rows holding a long run of the table's light grey rule (#ccc, give or take)."""
    rows = []
    for y in range(len(pixels) // width):
        run = best = 0
        for r, g, b in pixels[y * width:(y + 1) * width]:
            run = run + 1 if 180 <= r <= 220 and abs(r - g) < 8 and abs(r - b) < 8 else 0
            best = max(best, run)
        if best > 300:
            rows.append(y)
    return rows


def test_status_page_in_headless_chromium(tmp_path: Path) -> None:
    agent = AgentProcess("--web.listen-address", "127.0.0.1:0", "--no-collector.textfile")
    try:
        agent.wait_ready()
        url = f"http://{agent.address}/"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.headers["Content-Type"].startswith("text/html")
        dom = chromium("--dump-dom", url, profile=tmp_path / "profile").stdout
        row = r'<tr data-collector="(\w+)"><td>\w+</td><td>(yes|no)</td><td[^>]*>([^<]+)'
        rows = re.findall(row, dom)
        by_name = {name: (enabled, state) for name, enabled, state in rows}
        assert by_name["cpu"] == ("yes", "ok")
        cpu_row = re.search(r'<tr data-collector="cpu">(.*?)</tr>', dom).group(1)  # type: ignore[union-attr]
        assert re.search(r"<td>\d+(\.\d+)? (µs|ms|s)</td>", cpu_row), cpu_row
        assert by_name["textfile"] == ("no", "disabled")
        assert len(by_name) >= 19
        assert re.search(r'id="status" class="ok">ok<', dom)
        for link in ("/metrics", "/health", "/-/ready"):
            assert f'href="{link}"' in dom
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "status-page.png"
        shot.unlink(missing_ok=True)
        height = 400 + 40 * len(by_name)  # the whole table in view
        chromium(f"--screenshot={shot}", f"--window-size=1200,{height}", url,
                 profile=tmp_path / "profile")
        width, shot_height, pixels = read_png(shot.read_bytes())
        assert (width, shot_height) == (1200, height)
        # The status word is drawn in the page's green; nothing is drawn in its red (the
        # status is ok); the table's grey rules separate one band per collector row.
        green = sum(1 for p in pixels if p[1] > p[0] + 50 and p[1] > p[2] + 30)
        red = sum(1 for p in pixels if p[0] > p[1] + 80 and p[0] > p[2] + 80)
        assert green > 20 and red == 0, (green, red)
        rules = grey_rows(width, pixels)
        assert len(rules) >= len(by_name) + 1, rules
    finally:
        agent.proc.terminate()
        agent.proc.wait(timeout=15)
