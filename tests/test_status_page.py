"""GET / in a real headless Chromium: the page loads from the running agent, the collector
table has one row per collector, and a screenshot is kept as a test artifact."""

from __future__ import annotations

import os
import re
import subprocess
import urllib.request
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
        assert by_name["textfile"] == ("no", "disabled")
        assert len(by_name) >= 19
        assert re.search(r'id="status" class="ok">ok<', dom)
        for link in ("/metrics", "/health", "/-/ready"):
            assert f'href="{link}"' in dom
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "status-page.png"
        shot.unlink(missing_ok=True)
        chromium(f"--screenshot={shot}", "--window-size=1200,1400", url,
                 profile=tmp_path / "profile")
        assert shot.stat().st_size > 10_000
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        agent.proc.terminate()
        agent.proc.wait(timeout=15)
