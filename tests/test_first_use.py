"""The error edges a new user meets first: each problem is one line naming what was wrong,
where it came from (the file or the flag typed), in words rather than internal names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main

ROOT = Path(__file__).resolve().parent.parent


def problems(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    assert main(list(argv)) == 2
    return capsys.readouterr().err.strip().splitlines()


def test_a_wrong_kind_of_value_is_said_in_words(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "hostagent.yml"
    config.write_text("collectors:\n  cpu: 5\n")
    [line] = problems(capsys, "check-config", str(config))
    assert line == f"{config}: collectors.cpu: must be a mapping of fields, not a number"
    assert "Settings" not in line and "instance" not in line


def test_validation_errors_name_the_file(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "hostagent.yml"
    config.write_text("collectors:\n  cpu: {interval: 0}\n")
    assert problems(capsys, "check-config", str(config)) == [
        f"{config}: collectors.cpu.interval: must be greater than 0"]


def test_a_yaml_error_at_the_end_points_at_the_last_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "hostagent.yml"
    config.write_text("web:\n  listen_address: [\n")
    [line] = problems(capsys, "check-config", str(config))
    assert line.startswith(f"{config}: invalid YAML at the end of the file (line 2): "), line


def test_a_bad_flag_value_names_the_flag(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "hostagent.yml"
    config.write_text("collectors:\n  meminfo: {interval: 0}\n")
    lines = problems(capsys, "collect", "--once", "--config", str(config),
                     "--collector.cpu.interval=-1", "--web.max-requests=-3")
    assert sorted(lines) == sorted([
        "--collector.cpu.interval: must be greater than 0",
        "--web.max-requests: must be greater than or equal to 0",
        f"{config}: collectors.meminfo.interval: must be greater than 0"])


def test_an_unresolvable_listen_address_says_why() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agent", "run", "--web.listen-address",
         "nosuchhost.invalid:9110", "--collector.disable-defaults"],
        capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 3
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("hostagent: cannot listen on nosuchhost.invalid:9110: "), last
    assert "Unknown error" not in last and len(last.split(": ", 2)[2]) > 5
