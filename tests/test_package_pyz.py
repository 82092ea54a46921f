"""The single-file build: `./hostagent.pyz` run with nothing but the system's python3, in an
environment without this test run's venv, scraped over loopback."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests import release_builds

VERSION = "1.2.0"
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture(scope="module")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return release_builds.pyz(tmp_path_factory.mktemp("pyz") / "hostagent.pyz", VERSION)


def bare_env(home: Path) -> dict[str, str]:
    """What a fresh login has: a system PATH and a home; no venv, no PYTHONPATH."""
    return {"PATH": SYSTEM_PATH, "HOME": str(home), "LANG": "C.UTF-8"}


def test_is_one_executable_file_for_python3(pyz: Path) -> None:
    assert pyz.is_file() and os.access(pyz, os.X_OK)
    assert pyz.read_bytes().startswith(b"#!/usr/bin/env python3\n")


def test_runs_scrapes_and_stops_with_only_python3(pyz: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    with release_builds.Running([str(pyz), "run"], env=bare_env(home), cwd=work) as agent:
        assert agent.version() == VERSION
        status, page = agent.get("/")
        assert status == 200 and VERSION in page
        # The compiled dependencies came out of the file, unpacked under the home directory
        # (SHIV_ROOT moves them), and the interpreter is the system's.
        maps = Path(f"/proc/{agent.proc.pid}/maps").read_text()
        unpacked = [p for p in (home / ".shiv").iterdir() if p.is_dir()]
        assert len(unpacked) == 1 and unpacked[0].name.startswith("hostagent.pyz_")
        assert re.search(rf"{re.escape(str(unpacked[0]))}/site-packages/pydantic_core/\S+\.so",
                         maps), maps
        assert Path(f"/proc/{agent.proc.pid}/exe").resolve().is_relative_to("/usr")
    assert agent.proc.returncode == 0, "".join(agent.log)
    version = subprocess.run([str(pyz), "--version"], env=bare_env(home), capture_output=True,
                             text=True, timeout=60)
    assert version.stdout.strip() == f"hostagent {VERSION}", version.stderr
    assert list(work.iterdir()) == []
