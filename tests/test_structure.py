"""The package's shape: no import circles, no module reaching into another's private names,
and the exposition free of the parts upstream of it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "agent"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, list[tuple[str, list[str]]]]:
    """module -> (imported module, names) for every import in it, lazy ones included, except
    those only for type checking."""
    graph: dict[str, list[tuple[str, list[str]]]] = {}
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        tree = ast.parse(path.read_text())
        typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                       and "TYPE_CHECKING" in ast.unparse(node.test)
                       for n in ast.walk(node)}
        found = []
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [a.name for a in node.names]
                subs = [f"{node.module}.{n}" for n in names if f"{node.module}.{n}" in modules]
                found += [(s, []) for s in subs]
                found.append((node.module, [n for n in names if f"{node.module}.{n}"
                                            not in modules]))
            elif isinstance(node, ast.Import):
                found += [(a.name, []) for a in node.names]
        graph[name] = [(m, n) for m, n in found if m in modules and m != name]
    return graph


def test_no_import_circles() -> None:
    graph = {m: {target for target, _ in edges} for m, edges in imports().items()}
    # A package's __init__ importing its own submodules is how packages work, not a circle.
    def edges(m: str) -> set[str]:
        return {t for t in graph[m] if not t.startswith(m + ".")}

    cycles = []
    for start in graph:
        stack = [(start, [start])]
        seen = set()
        while stack:
            node, path = stack.pop()
            for nxt in edges(node):
                if nxt == start:
                    cycles.append(" -> ".join([*path, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    assert not cycles, cycles[:5]


def test_no_module_imports_another_modules_private_names() -> None:
    private = [(m, target, n) for m, edges in imports().items() for target, names in edges
               for n in names if n.startswith("_") and not n.startswith("__")]
    assert not private


def test_the_exposition_reads_nothing_upstream() -> None:
    upstream = ("agent.scheduler", "agent.collectors", "agent.ssh", "agent.agent", "agent.cli",
                "agent.config")
    reached = [(m, t) for m, edges in imports().items() if m.startswith("agent.exposition")
               for t, _ in edges if t.startswith(upstream)]
    assert not reached
