"""The package's shape: no import cycles (lazy imports included), nothing outside the repository."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "chinchilla_pipeline"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """module -> package modules it imports, at module level or inside functions."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                stem = ".".join(x for x in (base if node.level else "", node.module or "") if x)
                targets = [stem] + [f"{stem}.{a.name}" for a in node.names]
            else:
                continue
            graph[mod] |= {t for t in targets if t in files and t != mod}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    graph = _import_graph()
    assert graph["chinchilla_pipeline.plan"] >= {"chinchilla_pipeline.train.config"}  # the graph sees imports
    assert _cycles(graph) == []


def test_cycle_detection_finds_a_planted_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_nothing_refers_outside_the_repository():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    offenders = []
    for name in tracked.splitlines():
        path = ROOT / name
        if path.suffix in {".py", ".md", ".json", ".sh", ".txt", ".toml"} or path.name == "Makefile":
            text = path.read_text(encoding="utf-8", errors="replace")
            # the workspace this was built in, and its notes file (cite the original papers instead)
            if any(s in text for s in ("../" + "shared", "/work" + "/", "FACTS" + ".md")):
                offenders.append(name)
    assert offenders == []


INSTRUMENTS = "chinchilla_pipeline.instruments"
DOOR = "chinchilla_pipeline.cli"  # the command line calls both sides


def test_the_pipeline_never_imports_an_instrument():
    """The instruments (checks, benchmarks, experiments, the demo corpus) sit in a wing of their own: they import
    the pipeline, nothing in the pipeline imports them, so the package's top level is the pipeline alone."""
    graph = _import_graph()
    assert any(m.startswith(INSTRUMENTS + ".") for m in graph)  # the wing exists where this rule looks
    offenders = sorted(
        f"{m} -> {t}"
        for m, targets in graph.items()
        if not m.startswith((INSTRUMENTS, DOOR))
        for t in targets
        if t.startswith(INSTRUMENTS)
    )
    assert offenders == []
