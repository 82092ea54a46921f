"""Drop-in coverage: every node_* name that the most used node dashboard and host alert rules
reference, and that node_exporter exposes on this machine, hostagent exposes too."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request
from pathlib import Path

REFERENCE = Path(__file__).resolve().parent / "fixtures" / "reference"
REFERENCE_FILES = ["node-exporter-full.dashboard.json", "awesome-node-exporter.rules.yml"]

# Deliberate exceptions: none. (A name listed here must say why it is not exported.)
EXCEPTIONS: dict[str, str] = {}


def referenced_names() -> set[str]:
    text = "".join((REFERENCE / name).read_text() for name in REFERENCE_FILES)
    return set(re.findall(r"\bnode_[a-zA-Z0-9_]+", text))


def exposed(text: str) -> set[str]:
    return set(re.findall(r"^(node_\w+)", text, re.M))


def test_hostagent_exposes_every_referenced_name_node_exporter_has(node_exporter) -> None:
    referenced = referenced_names()
    assert len(referenced) > 200, "the reference files were not read"
    theirs = exposed(urllib.request.urlopen(node_exporter(), timeout=10).read().decode())
    result = subprocess.run([sys.executable, "-m", "agent", "collect", "--once"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    ours = exposed(result.stdout)
    needed = (referenced & theirs) - EXCEPTIONS.keys()
    assert len(needed) > 150
    missing = sorted(needed - ours)
    assert not missing, f"node_exporter exposes, hostagent does not: {missing}"
