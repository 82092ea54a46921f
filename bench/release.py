"""The single file against the installed release: size on disk and start-up time.

Builds ./hostagent.pyz as `make pyz` does and a release venv as `make deb` lays it out (then
byte-compiled, as the package's postinst does), both from the same wheels, and starts each
on loopback with the system's python3: time to `--version`'s exit (interpreter and imports)
and from exec to `/-/ready` answering 200. The zipapp's first start unpacks its wheels
(cold); later starts reuse them (warm).

    python bench/release.py [--runs N]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, free_port, wait_http

spec = importlib.util.spec_from_file_location("build", ROOT / "packaging" / "build.py")
assert spec and spec.loader
build = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build)


def du(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() or p.is_symlink())


def env(home: Path) -> dict[str, str]:
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}


def version_seconds(argv: list[str], home: Path) -> float:
    started = time.perf_counter()
    subprocess.run([*argv, "--version"], env=env(home), check=True, capture_output=True,
                   timeout=60)
    return time.perf_counter() - started


def ready_seconds(argv: list[str], home: Path) -> float:
    port = free_port()
    started = time.perf_counter()
    proc = subprocess.Popen([*argv, "run", "--web.listen-address", f"127.0.0.1:{port}"],
                            env=env(home), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_http(port, "/-/ready", timeout=30)
        return time.perf_counter() - started
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    wheelhouse = build.wheels(build.BUILD / "wheelhouse")
    with tempfile.TemporaryDirectory(prefix="hostagent-bench-") as tmp:
        work = Path(tmp)
        version = build.tree_version()
        pyz = build.pyz(version, wheelhouse, work / "hostagent.pyz")
        wheel = build.own_wheel(version, work / "wheel")
        release = work / "releases" / version
        build.build_venv(release, str(release), wheelhouse, wheel, version)
        subprocess.run([release / "bin" / "python", "-m", "compileall", "-q", "-j", "0",
                        release / "lib"], check=True, stdout=subprocess.DEVNULL)
        sizes = {"pyz": pyz.stat().st_size, "venv": du(release)}
        installed = [str(release / "bin" / "hostagent")]
        single = [str(pyz)]
        home = work / "home"
        home.mkdir()

        cold_ready = ready_seconds(single, home)
        unpacked = du(home / ".shiv")
        cold_home = work / "cold"
        cold_home.mkdir()
        cold_version = version_seconds(single, cold_home)
        figures: dict[str, dict[str, float]] = {"pyz": {}, "venv": {}}
        for name, argv in (("pyz", single), ("venv", installed)):
            version_seconds(argv, home)  # page cache warm for both
            figures[name]["version"] = median(
                [version_seconds(argv, home) for _ in range(args.runs)])
            figures[name]["ready"] = median(
                [ready_seconds(argv, home) for _ in range(args.runs)])

    print(f"python {sys.version.split()[0]} (bench), runs {args.runs}, "
          f"system python3 {os.path.realpath('/usr/bin/python3')}")
    print(f"size: pyz file {sizes['pyz'] / 1e6:.1f} MB, unpacked on first start "
          f"{unpacked / 1e6:.1f} MB; release venv {sizes['venv'] / 1e6:.1f} MB")
    print(f"pyz first start: --version {cold_version:.2f} s, start -> ready {cold_ready:.2f} s")
    for key, label in (("version", "--version"), ("ready", "start -> ready")):
        pyz_s, venv_s = figures["pyz"][key], figures["venv"][key]
        print(f"{label}: pyz {pyz_s:.3f} s, venv {venv_s:.3f} s, pyz/venv {pyz_s / venv_s:.2f}")


if __name__ == "__main__":
    main()
