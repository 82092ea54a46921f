"""Release artifacts: the dependency wheelhouse, the Debian package and the single-file zipapp.

    python packaging/build.py wheels [--wheelhouse DIR]
    python packaging/build.py deb    [--version V] [--wheelhouse DIR] [--out DIR] [--compression C]
    python packaging/build.py pyz    [--version V] [--wheelhouse DIR] [--out FILE]

The wheelhouse holds the dependencies' wheels (pip fetches them once; later builds install from
it with --no-index). hostagent's own wheel is built fresh for every artifact, at --version when
given (the tree's version otherwise), so tests can build a second release from one checkout.
Both artifacts carry compiled wheels for the building interpreter's Python and architecture.
"""

from __future__ import annotations

import argparse
import email.utils
import gzip
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEB = Path(__file__).resolve().parent / "deb"
BUILD = ROOT / "build"
INSTALL_BASE = "/opt/hostagent"
# The Debian interpreter the package's venv runs on; its python3.11 package is the dependency.
DEB_PYTHON = "/usr/bin/python3.11"
MAINTAINER = "hostagent maintainers <dev@hostagent.invalid>"
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
# pip runs without the caller's PYTHONPATH: a checkout on it would count as installed.
PIP_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PIP_NO_INPUT": "1"}


def tree_version() -> str:
    text = (ROOT / "agent" / "__init__.py").read_text()
    found = re.search(r'^__version__ = "([^"]+)"$', text, re.MULTILINE)
    if not found:
        raise SystemExit("agent/__init__.py: no __version__ line")
    return found.group(1)


def run(*argv: str | Path, **kwargs: object) -> None:
    kwargs.setdefault("env", PIP_ENV)
    subprocess.run([str(a) for a in argv], check=True, **kwargs)  # type: ignore[call-overload]


def wheels(wheelhouse: Path) -> Path:
    """Wheels of every runtime dependency (not hostagent itself), for this interpreter."""
    stamp = wheelhouse / ".requirements"
    wanted = (ROOT / "pyproject.toml").read_bytes()
    if stamp.exists() and stamp.read_bytes() == wanted:
        return wheelhouse
    wheelhouse.mkdir(parents=True, exist_ok=True)
    run(*PIP, "wheel", "--wheel-dir", wheelhouse, ROOT)
    for own in wheelhouse.glob("hostagent-*.whl"):
        own.unlink()
    stamp.write_bytes(wanted)
    return wheelhouse


def own_wheel(version: str, work: Path, edit: Callable[[Path], None] | None = None) -> Path:
    """hostagent's wheel at `version`, built from a copy of the tree (the tree is not touched);
    `edit` may change the copy first (tests build faulty releases with it)."""
    source = work / "source"
    shutil.copytree(ROOT / "agent", source / "agent",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md", "setup.py"):
        shutil.copy2(ROOT / name, source / name)
    init = source / "agent" / "__init__.py"
    init.write_text(re.sub(r'^__version__ = ".*"$', f'__version__ = "{version}"',
                           init.read_text(), flags=re.MULTILINE))
    if edit:
        edit(source)
    dist = work / "dist"
    run(*PIP, "wheel", "--no-deps", "--wheel-dir", dist, source, stdout=subprocess.DEVNULL)
    (wheel,) = dist.glob("hostagent-*.whl")
    return wheel


def deb_architecture() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], check=True, capture_output=True,
                          text=True).stdout.strip()


def glibc_floor(wheelhouse: Path) -> str:
    """The glibc every wheel runs on, as libc6's version: a wheel runs on the oldest of its
    manylinux tags, the package needs the newest of those."""
    legacy = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
    floor = (2, 17)
    for wheel in wheelhouse.glob("*.whl"):
        tags = [(int(a), int(b)) for a, b in re.findall(r"manylinux_(\d+)_(\d+)_", wheel.name)]
        tags += [v for k, v in legacy.items() if f"{k}_" in wheel.name]
        if tags:
            floor = max(floor, min(tags))
    return f"{floor[0]}.{floor[1]}"


def build_venv(release: Path, final: str, wheelhouse: Path, wheel: Path, version: str) -> None:
    """A venv at `release` that runs at `final`: pip-less, no byte-code (postinst compiles),
    stripped shared objects, no path of the build left in it."""
    run(DEB_PYTHON, "-m", "venv", "--without-pip", release)
    run(*PIP, "--python", release / "bin" / "python", "install", "--no-index", "--no-compile",
        "--no-warn-script-location", "--find-links", wheelhouse, "--find-links", wheel.parent,
        f"hostagent=={version}")
    # bin/ keeps the interpreter links and hostagent; dependencies' scripts are not needed.
    for entry in (release / "bin").iterdir():
        if not entry.name.startswith("python") and entry.name != "hostagent":
            entry.unlink()
    shutil.rmtree(release / "include", ignore_errors=True)  # headers: nothing here compiles
    # A module with a #! line but no execute bit: blank the line (line numbers stay).
    for module in release.glob("lib/python*/site-packages/**/*.py"):
        data = module.read_bytes()
        if data.startswith(b"#!") and not os.access(module, os.X_OK):
            module.write_bytes(b"\n" + data.split(b"\n", 1)[1])
    # Some wheels (protobuf's) ship every file executable: only scripts and objects keep it.
    for path in release.glob("lib/python*/site-packages/**/*"):
        if path.is_file() and not path.is_symlink() and os.access(path, os.X_OK):
            with path.open("rb") as f:
                head = f.read(4)
            if not head.startswith((b"\x7fELF", b"#!")):
                path.chmod(0o644)
    staged = str(release)
    cfg = release / "pyvenv.cfg"
    cfg.write_text("".join(line for line in cfg.read_text().splitlines(keepends=True)
                           if not line.startswith("command = ")))
    for script in (release / "bin").iterdir():
        if script.is_file() and not script.is_symlink():
            data = script.read_bytes()
            if data.startswith(b"#!"):
                script.write_bytes(data.replace(staged.encode(), final.encode()))
    # direct_url.json records where pip found the wheel: a path on the build machine.
    for record in release.glob("lib/python*/site-packages/*.dist-info/direct_url.json"):
        record.unlink()
        installed = record.parent / "RECORD"
        installed.write_text("".join(line for line in installed.read_text().splitlines(True)
                                     if "/direct_url.json," not in line))
    objects = [str(p) for p in release.rglob("*.so*") if p.is_file() and not p.is_symlink()]
    if objects:
        run("strip", "--strip-unneeded", "--remove-section=.comment", "--remove-section=.note",
            *objects)
    leaked = [str(p.relative_to(release)) for p in release.rglob("*") if staged != final
              and p.is_file() and not p.is_symlink() and staged.encode() in p.read_bytes()]
    if leaked:
        raise SystemExit(f"build path left in {', '.join(leaked)}")


def changelog(version: str) -> bytes:
    when = email.utils.formatdate(int(os.environ.get("SOURCE_DATE_EPOCH", "0")) or None)
    text = (f"hostagent ({version}) unstable; urgency=medium\n\n"
            f"  * Release {version}.\n\n -- {MAINTAINER}  {when}\n")
    return gzip.compress(text.encode(), compresslevel=9, mtime=0)


def install_file(source: Path | bytes, dest: Path, mode: int = 0o644) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(source if isinstance(source, bytes) else source.read_bytes())
    dest.chmod(mode)


def unit_text(name: str = "hostagent.service") -> str:
    """One of the repository's units, pointed at the package's paths."""
    text = (ROOT / "systemd" / name).read_text()
    text = text.replace("Install with `make install` (see README).",
                        "Installed by the hostagent package.")
    text = text.replace("file:/usr/local/lib/hostagent/README.md",
                        "file:/usr/share/doc/hostagent/README.md.gz")
    return text.replace("/usr/local/lib/hostagent/bin/", f"{INSTALL_BASE}/current/bin/")


def deb(version: str, wheelhouse: Path, out: Path, compression: str = "xz") -> Path:
    wheels(wheelhouse)
    arch = deb_architecture()
    with tempfile.TemporaryDirectory(prefix="hostagent-deb-") as tmp:
        work = Path(tmp)
        wheel = own_wheel(version, work)
        stage = work / "root"
        final = f"{INSTALL_BASE}/releases/{version}"
        build_venv(stage / final.lstrip("/"), final, wheelhouse, wheel, version)

        install_file(ROOT / "systemd" / "hostagent.yml", stage / "etc/hostagent/hostagent.yml")
        install_file(ROOT / "systemd" / "hostagent.default", stage / "etc/default/hostagent")
        install_file(unit_text().encode(), stage / "lib/systemd/system/hostagent.service")
        # The relay's unit and example config: installed, never enabled or started by the package.
        install_file(ROOT / "systemd" / "hostagent-relay.yml", stage / "etc/hostagent/relay.yml")
        install_file(unit_text("hostagent-relay.service").encode(),
                     stage / "lib/systemd/system/hostagent-relay.service")
        (stage / "usr/bin").mkdir(parents=True)
        (stage / "usr/bin/hostagent").symlink_to(f"{INSTALL_BASE}/current/bin/hostagent")
        doc = stage / "usr/share/doc/hostagent"
        install_file(DEB / "copyright", doc / "copyright")
        install_file(changelog(version), doc / "changelog.gz")
        install_file(gzip.compress((ROOT / "README.md").read_bytes(), 9, mtime=0),
                     doc / "README.md.gz")
        for page in sorted((ROOT / "docs").glob("*.md")):  # the README links them
            install_file(gzip.compress(page.read_bytes(), 9, mtime=0),
                         doc / "docs" / f"{page.name}.gz")
        install_file(gzip.compress((DEB / "hostagent.1").read_bytes(), 9, mtime=0),
                     stage / "usr/share/man/man1/hostagent.1.gz")
        install_file(DEB / "lintian-overrides", stage / "usr/share/lintian/overrides/hostagent")

        control = stage / "DEBIAN"
        control.mkdir()
        conffiles = ["/etc/hostagent/hostagent.yml", "/etc/default/hostagent",
                     "/etc/hostagent/relay.yml"]
        (control / "conffiles").write_text("".join(f"{c}\n" for c in conffiles))
        for script in ("preinst", "postinst", "prerm", "postrm"):
            text = (DEB / script).read_text().replace("@VERSION@", version)
            install_file(text.encode(), control / script, 0o755)
        sums = []
        size = 0
        for path in sorted(stage.rglob("*")):
            relative = path.relative_to(stage).as_posix()
            if relative.startswith("DEBIAN"):
                continue
            size += path.lstat().st_size if not path.is_dir() else 4096
            if path.is_file() and not path.is_symlink() and f"/{relative}" not in conffiles:
                sums.append(f"{hashlib.md5(path.read_bytes()).hexdigest()}  {relative}\n")
        (control / "md5sums").write_text("".join(sums))
        description = (DEB / "description").read_text()
        (control / "control").write_text(
            "Package: hostagent\n"
            f"Version: {version}\n"
            f"Architecture: {arch}\n"
            f"Maintainer: {MAINTAINER}\n"
            f"Installed-Size: {(size + 1023) // 1024}\n"
            f"Depends: python3.11, libc6 (>= {glibc_floor(wheelhouse)})\n"
            "Section: net\n"
            "Priority: optional\n"
            f"{description}")
        for path in stage.rglob("*"):
            if not path.is_symlink():
                path.chmod(0o755 if path.is_dir() or os.access(path, os.X_OK) else 0o644)
        out.mkdir(parents=True, exist_ok=True)
        target = out / f"hostagent_{version}_{arch}.deb"
        run("dpkg-deb", "--root-owner-group", f"-Z{compression}", "--build", stage, target,
            stdout=subprocess.DEVNULL)
        return target


def pyz(version: str, wheelhouse: Path, out: Path) -> Path:
    """One file that runs with python3 alone: shiv unpacks the wheels on first start into
    ~/.shiv (SHIV_ROOT to change) and reuses them afterwards."""
    wheels(wheelhouse)
    with tempfile.TemporaryDirectory(prefix="hostagent-pyz-") as tmp:
        wheel = own_wheel(version, Path(tmp))
        out.parent.mkdir(parents=True, exist_ok=True)
        run(Path(sys.executable).parent / "shiv", "--quiet", "--output-file", out,
            "--console-script", "hostagent", "--python", "/usr/bin/env python3", "--compressed",
            "--reproducible", "--no-index", "--find-links", wheelhouse,
            "--find-links", wheel.parent, f"hostagent=={version}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("wheels", "deb", "pyz"))
    parser.add_argument("--version", default=tree_version())
    parser.add_argument("--wheelhouse", type=Path, default=BUILD / "wheelhouse")
    parser.add_argument("--out", type=Path, help="deb: directory; pyz: file")
    parser.add_argument("--compression", default="xz", choices=("xz", "gzip", "zstd"),
                        help="deb: dpkg-deb's compressor (xz is Debian's default; gzip is faster)")
    args = parser.parse_args()
    if args.what == "wheels":
        print(wheels(args.wheelhouse))
    elif args.what == "deb":
        print(deb(args.version, args.wheelhouse, args.out or BUILD, args.compression))
    else:
        print(pyz(args.version, args.wheelhouse, args.out or ROOT / "hostagent.pyz"))


if __name__ == "__main__":
    main()
