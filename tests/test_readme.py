"""The README documents every configuration field and collector, and CI runs its test command."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from pydantic import BaseModel

from agent.collectors.catalog import BY_NAME
from agent.collectors.settings import CollectorSettings
from agent.config import Config
from agent.docs import BEGIN, END, rewrite

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def field_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    paths = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            nested = "NAME" if issubclass(annotation, CollectorSettings) else name
            if prefix == "collectors." and nested == "NAME":
                # Per-collector extras are documented as collectors.<name>.<field>.
                base = set(CollectorSettings.model_fields)
                paths += [f"collectors.{name}.{extra}"
                          for extra in annotation.model_fields if extra not in base]
                continue
            paths += field_paths(annotation, f"{prefix}{name}.")
        else:
            paths.append(f"{prefix}{name}")
    return paths


def test_every_config_field_is_documented() -> None:
    paths = field_paths(Config) + [f"collectors.NAME.{f}" for f in CollectorSettings.model_fields]
    missing = [p for p in paths if f"`{p}`" not in README]
    assert not missing


def test_collector_reference_is_generated_from_the_declarations() -> None:
    table = README[README.index(BEGIN):README.index(END)]
    assert set(re.findall(r"^\| `(\w+)` \|", table, re.M)) == set(BY_NAME)
    assert rewrite(README) == README, "run: python -m agent.docs README.md"


def test_ci_runs_the_readme_test_command() -> None:
    """The command the README gives for the tests is the one CI runs, and it runs the linters
    and the whole suite (make's dry run lists what it would do)."""
    section = README[README.index("run the lint and the whole test suite"):]
    command = re.search(r"```sh\n(.*?)\n```", section, re.S).group(1).strip()  # type: ignore[union-attr]
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.startswith("#")]
    assert ci[-1] == command
    argv = command.split()
    assert argv[0] == "make"
    dry = subprocess.run(["make", "-n", "-C", str(ROOT), *argv[1:]], capture_output=True,
                         text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    steps = dry.stdout.splitlines()
    for needed in ("ruff check agent tests", "mypy", "pytest"):
        assert any(f"/{needed}" in line for line in steps), (needed, steps)
