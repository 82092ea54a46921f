"""Release artifacts for the packaging and rollout tests, built by packaging/build.py as
`make deb` / `make pyz` build them. The dependency wheelhouse stays in build/ between sessions;
each artifact is built once per test module that asks for it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD_PY = ROOT / "packaging" / "build.py"
WHEELHOUSE = ROOT / "build" / "wheelhouse"


def build(what: str, out: Path, version: str | None = None, *extra: str) -> Path:
    argv = [sys.executable, str(BUILD_PY), what, "--wheelhouse", str(WHEELHOUSE),
            "--out", str(out), *extra]
    if version:
        argv += ["--version", version]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return Path(done.stdout.strip().splitlines()[-1])


def deb(out: Path, version: str) -> Path:
    """A .deb at `version` (gzip: a third of xz's build time, same contents)."""
    return build("deb", out, version, "--compression", "gzip")


def pyz(out: Path, version: str | None = None) -> Path:
    return build("pyz", out, version)


def wheels() -> Path:
    build("wheels", WHEELHOUSE)
    return WHEELHOUSE


def clean_env(**extra: str) -> dict[str, str]:
    """The environment an installed artifact sees: none of this test run's Python settings
    (PYTHONPATH would import the checkout instead of the artifact's code)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return {**env, **extra}


def relay_check(config: Path) -> subprocess.CompletedProcess[str]:
    """The installed `hostagent relay --check` on a config."""
    return subprocess.run(["/usr/bin/hostagent", "relay", "--check", "--config", str(config)],
                          capture_output=True, text=True, timeout=30, env=clean_env())


class Running:
    """An agent started from an artifact on 127.0.0.1:0: its address from the log line, ready
    waited for with a deadline, SIGTERM'd on exit."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None,
                 cwd: Path | None = None, timeout: float = 30) -> None:
        self.proc = subprocess.Popen([*argv, "--web.listen-address", "127.0.0.1:0"],
                                     stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     text=True, env=env or clean_env(), cwd=cwd)
        self.log: list[str] = []
        self.address = ""
        assert self.proc.stderr is not None
        started = time.monotonic()
        for line in self.proc.stderr:  # ends when the process exits
            self.log.append(line)
            if found := re.search(r"msg=listening .*address=(\S+)", line):
                self.address = found.group(1)
                break
            if time.monotonic() - started > timeout:
                break
        assert self.address, "".join(self.log)
        self.startup = time.monotonic() - started
        threading.Thread(target=self._drain, daemon=True).start()
        deadline = time.monotonic() + timeout
        while self.get("/-/ready")[0] != 200:
            assert time.monotonic() < deadline, "never ready: " + "".join(self.log)
            assert self.proc.poll() is None, "exited: " + "".join(self.log)
            time.sleep(0.05)

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://{self.address}{path}", timeout=10) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError:
            return 0, ""

    def version(self) -> str:
        status, body = self.get("/metrics")
        assert status == 200, body
        found = re.search(r'^hostagent_build_info\{[^}]*version="([^"]+)"', body, re.MULTILINE)
        assert found, body[:2000]
        return found.group(1)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
