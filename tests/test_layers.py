"""The layer rule: imports inside coordfit run only downward, and never in a circle.

Layers, lowest first (a module may import its own layer and the ones below it)::

    core < geometry < models, nvs < signals < runs < engine < api < bench < facade < cli

``models`` and ``nvs`` share a floor and import nothing of each other. ``api`` is
``coordfit/api.py`` and ``coordfit/viewfit.py``; ``facade`` is the ``coordfit`` package
itself (its ``__init__``), the names the api re-exports for users: the CLI may import it,
no module of the library does. ``cli`` is the Typer skin in ``cli/`` (``coordfit_cli``).
Every import counts, at module level, inside a function or under ``TYPE_CHECKING``. A lazy
facade (a package ``__init__`` with a PEP 562 ``_LAZY`` table: ``coordfit``,
``coordfit.signals``, ``coordfit.bench``) imports on first use the modules its ``_LAZY``
and ``_KINDS`` tables name, so those are its edges. Importing a module does not count as
importing its parent package (only the package's own names do).

Run it as a script to print the graph's upward arrows and circles for any checkout::

    python tests/test_layers.py [ROOT]
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

LAYERS = ["core", "geometry", "models|nvs", "signals", "runs", "engine", "api", "bench", "facade", "cli"]
# The top-level modules of coordfit/ and the floor each stands on.
TOP_MODULES = {"coordfit": "facade", "coordfit.api": "api", "coordfit.viewfit": "api", "coordfit._version": "core"}
# Circles tolerated for now, each with its reason. Any other circle fails.
KNOWN_CIRCLES: dict[frozenset[str], str] = {
    # The views engineer is rewriting both files (issue 17.3); the lead removes this at merge.
    frozenset({"coordfit.signals.views.signal", "coordfit.signals.views.render"}): "views rewrite in progress",
}


def module_files(root: Path) -> dict[str, Path]:
    """Every module of coordfit/ and cli/ by its dotted name."""
    out = {}
    for package, folder in (("coordfit", root / "coordfit"), ("coordfit_cli", root / "cli")):
        for path in sorted(folder.rglob("*.py")):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def layer_of(module: str) -> str:
    if module.startswith("coordfit_cli"):
        return "cli"
    if module in TOP_MODULES:
        return TOP_MODULES[module]
    return module.split(".")[1]


def rank(layer: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if layer in names.split("|"))


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _lazy_edges(module: str, tree: ast.Module) -> set[str]:
    """The modules a PEP 562 facade loads: the values of ``_LAZY`` and the ``_KINDS``."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") in ("_LAZY", "_KINDS") for t in node.targets):
            value = ast.literal_eval(node.value)
            names |= set(value.values() if isinstance(value, dict) else value)
    return {f"{module}.{name}" for name in names}


def import_graph(root: Path) -> dict[str, dict[str, int]]:
    """module -> {imported coordfit module: first line}, for coordfit/ and cli/."""
    files = module_files(root)
    graph: dict[str, dict[str, int]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"
        edges: dict[str, int] = {}

        def add(target: str, line: int) -> None:
            while target and target not in files:  # `from a.b import name`: the module a.b
                target = target.rpartition(".")[0]
            if target and target != module:
                edges.setdefault(target, line)

        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] in ("coordfit", "coordfit_cli"):
                        add(alias.name, node.lineno)
            elif isinstance(node, ast.ImportFrom):
                source = _resolve(module, is_package, node)
                if source.split(".")[0] not in ("coordfit", "coordfit_cli"):
                    continue
                for alias in node.names:  # `from pkg import submodule` imports the submodule
                    full = f"{source}.{alias.name}"
                    add(full if full in files else source, node.lineno)
        if is_package:
            for target in _lazy_edges(module, tree):
                add(target, 0)
        graph[module] = edges
    return graph


def upward_arrows(graph: dict[str, dict[str, int]]) -> list[str]:
    """Imports from a lower floor to a higher one, or between the two sides of one floor."""
    out = []
    for source, edges in graph.items():
        for target, line in edges.items():
            a, b = layer_of(source), layer_of(target)
            if rank(b) > rank(a) or (rank(a) == rank(b) and a != b):
                out.append(f"{source}:{line} -> {target}  ({a} -> {b})")
    return sorted(out)


def circles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Every elementary cycle of the graph, each from its smallest name (graphs here are small)."""
    found: set[tuple[str, ...]] = set()
    for start in sorted(graph):
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, {}):
                if nxt == start:
                    found.add(tuple(path))
                elif nxt > start and nxt not in path:
                    stack.append((nxt, [*path, nxt]))
    return [list(c) for c in sorted(found)]


def _root() -> Path:
    return Path(__file__).resolve().parents[1]


def test_no_import_runs_upward():
    arrows = upward_arrows(import_graph(_root()))
    assert not arrows, "imports from a lower layer to a higher one:\n" + "\n".join(arrows)


def test_no_import_circles():
    unknown = [c for c in circles(import_graph(_root())) if frozenset(c) not in KNOWN_CIRCLES]
    assert not unknown, "import circles:\n" + "\n".join(" -> ".join([*c, c[0]]) for c in unknown)


def test_the_graph_sees_every_kind_of_import(tmp_path):
    """The checks can fail: a function-level upward import and a circle are both found."""
    pkg = tmp_path / "coordfit"
    for folder in ("core", "engine"):
        (pkg / folder).mkdir(parents=True)
        (pkg / folder / "__init__.py").write_text("")
    (tmp_path / "cli").mkdir()
    (tmp_path / "cli" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text('_LAZY = {"fit": "engine.train"}\n')
    (pkg / "core" / "low.py").write_text("def f():\n    from ..engine import train\n")
    (pkg / "engine" / "train.py").write_text("from ..core.low import f\nfrom .. import engine\n")
    (pkg / "engine" / "other.py").write_text("import coordfit.engine.train\n")
    graph = import_graph(tmp_path)
    assert graph["coordfit"] == {"coordfit.engine.train": 0}
    assert upward_arrows(graph) == ["coordfit.core.low:2 -> coordfit.engine.train  (core -> engine)"]
    assert circles(graph) == [["coordfit.core.low", "coordfit.engine.train"]]
    assert graph["coordfit.engine.other"] == {"coordfit.engine.train": 1}


if __name__ == "__main__":
    graph = import_graph(Path(sys.argv[1]) if len(sys.argv) > 1 else _root())
    arrows, cycles = upward_arrows(graph), circles(graph)
    print(f"{len(graph)} modules, {sum(map(len, graph.values()))} imports")
    print(f"{len(arrows)} upward arrows")
    print("\n".join(f"  {a}" for a in arrows))
    print(f"{len(cycles)} circles")
    print("\n".join("  " + " -> ".join([*c, c[0]]) for c in cycles))
