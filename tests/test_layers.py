"""The import graph of the project: one direction between layers, no cycle between packages.

Layers: mnaft_core <- storage <- tasks <- flows <- the CLI (flows.cli). Inside mnaft_core each
subpackage (data, models, organism, evaluation, ...) is a node; an import cycle between two of them
fails, lazy imports inside functions included.
"""

from __future__ import annotations

from pathlib import Path

from storage.keys import imports_of

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("mnaft_core", "storage", "tasks", "flows", "flows.cli")


def project_modules() -> list[str]:
    out = []
    for top in ("mnaft_core", "storage", "tasks", "flows"):
        for f in sorted((ROOT / top).rglob("*.py")):
            parts = f.relative_to(ROOT).with_suffix("").parts
            out.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


def layer(module: str) -> int:
    if module == "flows.cli":
        return LAYERS.index("flows.cli")
    return LAYERS.index(module.split(".")[0])


def node(module: str) -> str:
    """The package an import-cycle check sees: mnaft_core's subpackages (and top modules), else layers."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "mnaft_core" and len(parts) > 1 else parts[0]


def graph() -> dict[str, set[str]]:
    modules = set(project_modules())
    edges: dict[str, set[str]] = {}
    for m in modules:
        targets = set()
        for imported in imports_of(m):
            while imported and imported not in modules:  # `from a.b import name`: the module a.b
                imported = imported.rpartition(".")[0]
            if imported:
                targets.add(imported)
        edges[m] = targets
    return edges


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} -> {t}" for m, ts in edges.items() for t in ts if layer(t) > layer(m))


def package_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Cycles between packages (strongly connected components of more than one node, Tarjan)."""
    pk: dict[str, set[str]] = {}
    for m, ts in edges.items():
        pk.setdefault(node(m), set()).update(node(t) for t in ts if node(t) != node(m))
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(pk.get(v, ())):
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
                cycles.append(sorted(comp))

    for v in sorted(pk):
        if v not in index:
            visit(v)
    return cycles


def test_layers_import_one_way() -> None:
    assert upward_imports(graph()) == []


def test_no_import_cycle_between_packages() -> None:
    assert package_cycles(graph()) == []


def test_the_checks_catch_what_they_look_for() -> None:
    planted = {
        "mnaft_core.models.loading": {"mnaft_core.evaluation.metrics"},
        "mnaft_core.evaluation.metrics": {"mnaft_core.models.loading"},
        "tasks.data": {"flows.cli"},
        "storage.keys": {"mnaft_core._base"},
    }
    assert package_cycles(planted) == [["mnaft_core.evaluation", "mnaft_core.models"]]
    assert upward_imports(planted) == ["tasks.data -> flows.cli"]
    assert "mnaft_core.organism.bootstrap" in project_modules()
