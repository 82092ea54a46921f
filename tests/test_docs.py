"""The README and docs/ stay honest: every relative link reaches a file (and a heading, when it
names one), every `hostagent run` flag they mention exists, and the README names every Debian
package the test command installs."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from agent.cli import parser

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
FLAG = re.compile(r"(?<![\w-])--((?:no-)?(?:web|path|log|collector)\.[A-Za-z0-9_.-]*[A-Za-z0-9])")
# Prometheus's own flags, named where the docs compare with it or tell how to set it up.
OTHER_PROGRAMS = {"web.enable-lifecycle", "web.enable-remote-write-receiver"}


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {slug(m) for m in re.findall(r"^#+ (.+)$", text, re.M)}


def test_pages_exist() -> None:
    assert len(PAGES) > 5
    assert all(page.stat().st_size for page in PAGES)


def test_every_relative_link_resolves() -> None:
    broken = []
    for page in PAGES:
        for target in LINK.findall(page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            if not resolved.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken


def run_flags() -> set[str]:
    run = next(action for action in parser()._actions
               if isinstance(action, argparse._SubParsersAction)).choices["run"]
    return {option[2:] for action in run._actions for option in action.option_strings}


def test_every_documented_flag_exists() -> None:
    known = run_flags()
    assert "web.listen-address" in known and "collector.cpu" in known
    unknown = set()
    for page in PAGES:
        for flag in FLAG.findall(page.read_text()):
            # Placeholders (--collector.NAME.SETTING) are upper case words.
            if any(part.isupper() for part in flag.split(".")) or flag in OTHER_PROGRAMS:
                continue
            if flag not in known:
                unknown.add(f"{page.name}: --{flag}")
    assert not unknown


def test_readme_names_every_test_package() -> None:
    makefile = (ROOT / "Makefile").read_text()
    block = re.search(r"^TEST_PACKAGES := (.*?)(?<!\\)$", makefile, re.M | re.S)
    assert block
    packages = block.group(1).replace("\\", " ").split()
    assert "prometheus" in packages
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("| package | why |"):]
    assert not [p for p in packages if f"`{p}`" not in table]
