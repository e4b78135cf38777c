"""The package's import graph, built statically from the source (no module is imported).

Rules (docs/architecture.md explains them):

- no import cycle among ``baler_ext`` modules through module-level imports;
- every import, lazy ones (inside functions) included, goes to the same top-level part
  of the package or to a lower layer of :data:`LAYERS`, so a cycle through lazy imports
  can only stay inside one part (e.g. ``models/`` registering its families);
- the number of lazy imports does not grow: they are for deferring heavy dependencies
  (torch, iminuit, dask) and optional ones, not for hiding cycles.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "baler_ext"

#: bottom to top; a module may import its own part and the parts of lower layers only
LAYERS: list[set[str]] = [
    {"errors", "__init__", "exact"},
    {"registry", "project", "devices", "normalise", "console", "threads", "heap", "plotting"},
    {"analysis", "losses", "precision"},
    {"config"},
    {"io", "codec", "models"},
    {"model_store", "training"},
    {"evaluation", "executors"},
    {"stages", "config_reference"},
    {"workflow"},
    {"cli"},
    {"__main__"},
]

#: imports made inside functions (today's count); lower it when you can, never raise it
#: without a reason a reviewer accepts
MAX_LAZY_IMPORTS = 60


@dataclass
class ImportGraph:
    """Module name -> the ``baler_ext`` modules it imports (module level / anywhere)."""

    top: dict[str, set[str]] = field(default_factory=dict)
    every: dict[str, set[str]] = field(default_factory=dict)
    lazy: list[str] = field(default_factory=list)


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def _targets(
    node: ast.Import | ast.ImportFrom,
    module: str,
    is_pkg: bool,
    modules: dict[str, tuple[Path, bool]],
) -> list[str]:
    """The ``baler_ext`` modules an import statement loads (``from m import sub`` -> m.sub)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            base = module.split(".")[: None if is_pkg else -1]
            base = base[: len(base) - node.level + 1]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        names = [
            f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in modules else prefix for a in node.names
        ]
    return [n for n in names if n in modules]


def _walk(
    node: ast.AST,
    in_function: bool,
    module: str,
    is_pkg: bool,
    where: str,
    modules: dict[str, tuple[Path, bool]],
    top: set[str],
    every: set[str],
    lazy: list[str],
) -> None:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            found = set(_targets(child, module, is_pkg, modules)) - {module}
            every |= found
            if in_function and found:
                lazy.append(f"{where}:{child.lineno}")
            elif not in_function:
                top |= found
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            _walk(child, True, module, is_pkg, where, modules, top, every, lazy)
        elif (
            isinstance(child, ast.If)
            and isinstance(child.test, ast.Name)
            and child.test.id == "TYPE_CHECKING"
        ):
            continue
        else:
            _walk(child, in_function, module, is_pkg, where, modules, top, every, lazy)


def build_graph() -> ImportGraph:
    """Parse every module; imports under ``if TYPE_CHECKING:`` are not edges."""
    modules = _modules()
    graph = ImportGraph()
    for module, (path, is_pkg) in modules.items():
        top: set[str] = set()
        every: set[str] = set()
        _walk(
            ast.parse(path.read_text(), str(path)),
            False,
            module,
            is_pkg,
            str(path.relative_to(PACKAGE.parent)),
            modules,
            top,
            every,
            graph.lazy,
        )
        graph.top[module], graph.every[module] = top, every
    return graph


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``edges`` as ``[a, b, ..., a]``, or None (iterative DFS)."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    for start in sorted(edges):
        if start in state:
            continue
        stack = [(start, iter(sorted(edges[start])))]
        path = [start]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(child) == 1:
                return [*path[path.index(child) :], child]
            elif child not in state:
                state[child] = 1
                stack.append((child, iter(sorted(edges.get(child, ())))))
                path.append(child)
    return None


def part(module: str) -> str:
    """``baler_ext.codec.modes`` -> ``codec``; ``baler_ext`` -> ``__init__``."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "__init__"


def layer(name: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if name in names)


GRAPH = build_graph()


def test_find_cycle_finds_a_cycle_and_accepts_a_dag():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_known_imports():
    # the parser must resolve absolute, relative and "from package import module" forms
    assert "baler_ext.errors" in GRAPH.top["baler_ext.registry"]
    assert "baler_ext.model_store" in GRAPH.top["baler_ext.stages.compress"]
    assert "baler_ext.models.sae" in GRAPH.top["baler_ext.models"]
    assert GRAPH.lazy, "no lazy import found: the walker is broken"


def test_no_import_cycle_at_module_level():
    cycle = find_cycle(GRAPH.top)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_every_part_of_the_package_has_a_layer():
    parts = {part(m) for m in GRAPH.top}
    known = set().union(*LAYERS)
    assert parts <= known, f"give {sorted(parts - known)} a layer in LAYERS (and docs)"


def test_imports_go_down_the_layers_lazy_ones_included():
    upward = sorted(
        f"{m} -> {d}"
        for m, deps in GRAPH.every.items()
        for d in deps
        if part(m) != part(d) and layer(part(d)) >= layer(part(m))
    )
    assert not upward, "imports against the layering:\n" + "\n".join(upward)
    # hence a cycle through lazy imports stays inside one part of the package
    between_parts = {m: {d for d in deps if part(d) != part(m)} for m, deps in GRAPH.every.items()}
    assert find_cycle(between_parts) is None


def test_lazy_imports_do_not_grow():
    assert len(GRAPH.lazy) <= MAX_LAZY_IMPORTS, (
        f"{len(GRAPH.lazy)} imports inside functions (at most {MAX_LAZY_IMPORTS}); "
        "import at module level unless the import is heavy or optional:\n" + "\n".join(GRAPH.lazy)
    )


def test_config_does_not_import_the_analysis_package():
    code = (
        "import sys, baler_ext.config; "
        "print(sorted(m for m in sys.modules if m.startswith('baler_ext.analysis')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]", f"importing baler_ext.config imported {out}"
