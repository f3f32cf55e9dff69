"""The code's shape: imports flow one way through the layers the project names, and never in a circle.

Every import counts, at module level or inside a function: a function-level import is still a
dependency, only a later one.
"""
from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGES = ("jobs", "expectations", "udfs", "annotators", "schemas")
# top to bottom: a module imports from its own package or from packages further down, never up
LAYERS = [
    ("jobs",),  # the spark-submit entry points (jobs/<job>.py) and the package itself
    ("jobs.commandline",),
    ("jobs.stages", "jobs.commands"),  # side by side: neither imports the other
    ("jobs.warehouse",),
    ("jobs.io",),
    ("jobs.spark",),
    ("jobs.config",),
    ("expectations",),
    ("udfs",),
    ("annotators",),
    ("schemas",),
]


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The module of ours an imported name refers to (the longest known prefix), or None."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str) -> set[str]:
    """Our modules that `module` imports, anywhere in its body."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            target = _resolve(name)
            if target and target != module:
                found.add(target)
    return found


def layer_of(module: str) -> tuple[int, str]:
    """(layer index, the package that places it): the longest matching package wins."""
    best = (-1, "")
    for index, packages in enumerate(LAYERS):
        for package in packages:
            if (module == package or module.startswith(package + ".")) and len(package) > len(best[1]):
                best = (index, package)
    return best


def test_imports_only_go_down_the_layers():
    wrong = []
    for module in MODULES:
        mine, my_package = layer_of(module)
        for target in imports_of(module):
            theirs, their_package = layer_of(target)
            if their_package == my_package and module != my_package:
                continue  # inside one package
            if theirs <= mine and not (module == my_package and their_package == my_package):
                wrong.append(f"{module} ({my_package}) imports {target} ({their_package})")
    assert not wrong, "imports against the layers (docs/architecture.md):\n" + "\n".join(sorted(wrong))


def test_no_import_cycles():
    graph = {m: imports_of(m) for m in MODULES}
    cycles, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checks_see_what_they_check():
    """The rules above would pass vacuously if the module walk found nothing: it finds the layers."""
    assert {"jobs.commandline.runner", "jobs.stages.stage", "jobs.warehouse.store", "udfs.annotate",
            "annotators.asr", "schemas.errors"} <= set(MODULES)
    assert "jobs.stages.stage" in imports_of("jobs.commandline.runner")
    assert layer_of("jobs.commandline.runner")[0] < layer_of("jobs.stages.ingest")[0] < layer_of("udfs.probe")[0]
