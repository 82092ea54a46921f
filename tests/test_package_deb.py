"""The Debian package, for real: built as `make deb` builds it, checked by lintian, then
installed, run, upgraded, rolled back, downgraded, removed and purged with dpkg on this machine.
systemd is not PID 1 here, so the maintainer scripts' service steps must stand aside. The host
is left as it was: the package is purged at the end whatever happened."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import release_builds
from tests.conftest import require_tool

V1, V2 = "1.0.0", "1.1.0"
BASE = Path("/opt/hostagent")
CONFIG = Path("/etc/hostagent/hostagent.yml")
DEFAULTS = Path("/etc/default/hostagent")
UNIT = Path("/lib/systemd/system/hostagent.service")
RELAY_CONFIG = Path("/etc/hostagent/relay.yml")
RELAY_UNIT = Path("/lib/systemd/system/hostagent-relay.service")
# Where anything the package creates could be left behind.
TREES = ["/etc", "/opt", "/var/lib", "/lib/systemd", "/usr/bin", "/usr/share/doc",
         "/usr/share/man/man1", "/usr/share/lintian"]
OVERRIDES = Path(__file__).resolve().parent.parent / "packaging" / "deb" / "lintian-overrides"


def dpkg(*args: str) -> str:
    """dpkg as an operator runs it (no terminal, no forced answers), waiting out another
    dpkg or apt on this machine for up to two minutes."""
    deadline = time.monotonic() + 120
    while True:
        done = subprocess.run(["dpkg", *args], capture_output=True, text=True, timeout=300,
                              stdin=subprocess.DEVNULL,
                              env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if done.returncode == 0:
            return done.stdout + done.stderr
        if "lock" not in done.stderr or time.monotonic() > deadline:
            raise AssertionError(f"dpkg {' '.join(args)}: {done.stdout}{done.stderr}")
        time.sleep(1)


def status() -> str:
    done = subprocess.run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev}", "hostagent"],
                          capture_output=True, text=True, timeout=30)
    return done.stdout.strip() if done.returncode == 0 else "absent"


def traces() -> set[str]:
    """Every path named like the package in the trees it installs into."""
    found = subprocess.run(["find", *[t for t in TREES if Path(t).exists()], "-xdev",
                            "-name", "*hostagent*"], capture_output=True, text=True, timeout=120)
    return set(found.stdout.split())


def installed_version() -> str:
    return subprocess.run(["/usr/bin/hostagent", "--version"], capture_output=True, text=True,
                          timeout=30, check=True, env=release_builds.clean_env()
                          ).stdout.split()[-1]


@pytest.fixture(scope="module")
def debs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    require_tool("dpkg-deb")
    out = tmp_path_factory.mktemp("debs")
    return {version: release_builds.deb(out, version) for version in (V1, V2)}


@pytest.fixture
def host() -> Iterator[set[str]]:
    """This machine, as root, without hostagent installed; purged afterwards."""
    if os.geteuid() != 0:
        pytest.skip("installing a package needs root")
    if status() != "absent" and not status().startswith("un"):
        pytest.skip(f"a hostagent package is already installed here ({status()})")
    before = traces()
    try:
        yield before
    finally:
        if status() not in ("absent", "un", "pn"):
            dpkg("--purge", "hostagent")


def test_lintian_reports_nothing_unexplained(debs: dict[str, Path]) -> None:
    lintian = require_tool("lintian")
    done = subprocess.run([lintian, "--fail-on", "error,warning", "--display-level", ">=info",
                           str(debs[V1])], capture_output=True, text=True, timeout=300)
    tags = [line for line in done.stdout.splitlines() if re.match(r"^[EWIXP]: ", line)]
    assert done.returncode == 0 and not tags, done.stdout + done.stderr
    # Every override says why: a comment heads each group of overrides.
    explained = False
    for line in OVERRIDES.read_text().splitlines():
        if line.startswith("hostagent: "):
            assert explained, line
        explained = line.startswith(("#", "hostagent: ")) and (explained or line[0] == "#")


def test_control_fields(debs: dict[str, Path]) -> None:
    fields = subprocess.run(["dpkg-deb", "--field", str(debs[V1])], capture_output=True,
                            text=True, timeout=30, check=True).stdout
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert f"Architecture: {arch}\n" in fields
    assert re.search(r"^Depends: python3\.11, libc6 \(>= 2\.\d+\)$", fields, re.MULTILINE)
    conffiles = subprocess.run(["dpkg-deb", "--info", str(debs[V1]), "conffiles"],
                               capture_output=True, text=True, timeout=30, check=True).stdout
    assert conffiles.split() == [str(CONFIG), str(DEFAULTS), str(RELAY_CONFIG)]


def test_install_run_upgrade_rollback_downgrade_purge(debs: dict[str, Path],
                                                      host: set[str]) -> None:
    # Install: the release, the link, the unit; no systemd here, so no service steps.
    output = dpkg("--install", str(debs[V1]))
    assert "systemd is not running; the service was neither enabled nor started" in output
    assert status() == "ii"
    assert (BASE / "current").readlink() == Path(f"releases/{V1}")
    assert installed_version() == V1
    assert any((BASE / "releases" / V1 / "lib").rglob("__pycache__/*.pyc")), "not byte-compiled"
    unit = UNIT.read_text()
    assert f"ExecStart={BASE}/current/bin/hostagent run --config {CONFIG}" in unit
    assert "DynamicUser=yes\n" in unit
    assert not Path("/etc/systemd/system/multi-user.target.wants/hostagent.service").exists()
    # The relay: its unit and example config, installed and left off.
    relay_unit = RELAY_UNIT.read_text()
    assert (f"ExecStart={BASE}/current/bin/hostagent relay --config {RELAY_CONFIG}\n"
            in relay_unit)
    assert "/usr/local/lib" not in relay_unit
    assert not Path("/etc/systemd/system/multi-user.target.wants/hostagent-relay.service"
                    ).exists()
    relay_check = release_builds.relay_check(RELAY_CONFIG)
    assert relay_check.returncode == 2 and relay_check.stderr.startswith(
        "routes[0].wecom.key_file: cannot read /etc/hostagent/relay/"), relay_check.stderr
    secrets = Path("/etc/hostagent/relay")
    secrets.mkdir()
    for name in ("ops-wecom.key", "oncall-dingtalk.token", "oncall-dingtalk.secret"):
        (secrets / name).write_text("placeholder\n")
    relay_check = release_builds.relay_check(RELAY_CONFIG)
    assert relay_check.returncode == 0, relay_check.stderr
    # The installed agent runs on its conffile, on loopback.
    with release_builds.Running(["/usr/bin/hostagent", "run", "--config", str(CONFIG)]) as agent:
        assert agent.version() == V1
    assert agent.proc.returncode == 0, "".join(agent.log)

    # The operator edits both conffiles; an upgrade keeps the edits without asking.
    CONFIG.write_text(CONFIG.read_text() + "scheduler:\n  workers: 2\n")
    DEFAULTS.write_text('HOSTAGENT_ARGS="--log.level=debug"\n')
    output = dpkg("--install", str(debs[V2]))
    assert "not empty so not removed" not in output, output
    assert (BASE / "current").readlink() == Path(f"releases/{V2}")
    assert installed_version() == V2
    assert "  workers: 2\n" in CONFIG.read_text()
    assert DEFAULTS.read_text() == 'HOSTAGENT_ARGS="--log.level=debug"\n'
    verify = subprocess.run(["dpkg", "--verify", "hostagent"], capture_output=True, text=True,
                            timeout=120).stdout.split("\n")
    assert sorted(line.split()[-1] for line in verify if line) == [str(DEFAULTS), str(CONFIG)]
    with release_builds.Running(["/usr/bin/hostagent", "run", "--config", str(CONFIG)]) as agent:
        assert agent.version() == V2
    # The previous release is kept, whole and runnable, beside the new one.
    previous = BASE / "releases" / V1 / "bin" / "hostagent"
    assert subprocess.run([str(previous), "--version"], capture_output=True, text=True,
                          timeout=30, env=release_builds.clean_env()).stdout.split()[-1] == V1
    assert sorted(p.name for p in (BASE / "releases").iterdir()) == [V1, V2]

    # Rollback by the link, as the README says; then back.
    (BASE / "current.new").symlink_to(f"releases/{V1}")
    (BASE / "current.new").replace(BASE / "current")
    assert installed_version() == V1
    (BASE / "current.new").symlink_to(f"releases/{V2}")
    (BASE / "current.new").replace(BASE / "current")

    # Downgrade with dpkg: the kept release becomes the package's again, V2 is kept.
    dpkg("--install", str(debs[V1]))
    assert (BASE / "current").readlink() == Path(f"releases/{V1}")
    assert installed_version() == V1
    assert sorted(p.name for p in (BASE / "releases").iterdir()) == [V1, V2]

    # Remove keeps only the conffiles; purge leaves nothing.
    output = dpkg("--remove", "hostagent")
    assert "not empty so not removed" not in output, output
    assert status() == "rc"
    assert not BASE.exists() and not Path("/usr/bin/hostagent").exists() and not UNIT.exists()
    assert not RELAY_UNIT.exists()
    assert CONFIG.exists() and DEFAULTS.exists() and RELAY_CONFIG.exists()
    dpkg("--purge", "hostagent")
    assert status() in ("absent", "un", "pn")
    assert traces() == host, traces() ^ host


def test_build_leaves_the_tree_alone(debs: dict[str, Path]) -> None:
    """The version is set in a copy: the checkout still says its own."""
    init = (release_builds.ROOT / "agent" / "__init__.py").read_text()
    assert f'"{V1}"' not in init and f'"{V2}"' not in init
    assert shutil.which("dpkg-deb")
