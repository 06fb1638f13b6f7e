"""The structure of the house, measured from its imports.

Every module of ``rmbuild/`` and ``artifact_store/`` is parsed with ``ast``; every ``import``
counts, the ones inside functions included: a function-level import that climbs back up is
still a dependency that runs, only later. The one exception is an import under
``if TYPE_CHECKING:``: it never runs, and it only names the type of an object a caller hands
down (the store's helper modules take the ``Store`` they were split out of as a parameter, a
session's helpers the engine that owns them). Such a name ties no load order and no behaviour
to the module it names; counting it would force ``Any`` annotations, which hide more design
than they show.

An ``import a.b`` or ``from a.b import c`` is an edge to the module ``a.b``, or to ``a.b.c``
when that is a module. Importing ``a.b.c`` also runs the package ``a.b``'s ``__init__``, but
that implicit step is not an edge: a package ``__init__`` that re-exports its children is not
a circle unless a child imports the ``__init__`` back, which is an explicit edge and counts.

The test asserts:

* no circles: no strongly connected component of more than one module;
* the runtime floor (``rmbuild/runtime/``) imports neither the plugin registry, nor any
  backend, nor the planning and building wings: a backend's runtime builds on it, never the
  other way round;
* the store (``artifact_store/``) is a library of its own: it imports nothing from ``rmbuild``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("rmbuild", "artifact_store")

# What the runtime floor may never import: the registry that joins plugins to the rest, the
# backends themselves, the wings that plan, build and store artifacts, and the loader that joins
# an artifact to a session (it lives a floor above the runtime for this reason).
RUNTIME = "rmbuild.runtime"
FORBIDDEN_FOR_RUNTIME = (
    "rmbuild.plugins",
    "rmbuild.backends",
    "rmbuild.planning",
    "rmbuild.build",
    "rmbuild.storage",
    "rmbuild.loading",
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            found[_module_name(path)] = path
    return found


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of ``tree`` except the bodies of ``if TYPE_CHECKING:`` (their ``else`` runs)."""
    pending = [tree]
    while pending:
        node = pending.pop()
        yield node
        if _type_checking_only(node):
            pending.extend(node.orelse)  # type: ignore[attr-defined]
            continue
        pending.extend(ast.iter_child_nodes(node))


def _imports(name: str, path: Path, modules: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """Each internal module ``name`` imports, with the line of the import."""
    is_package = path.name == "__init__.py"
    # The package a relative import starts from: the module's own for an __init__.
    here = name.split(".") if is_package else name.split(".")[:-1]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = alias.name
                # ``import a.b.c`` where a.b.c is not a module (rare): its nearest module.
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target:
                    yield target, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            for alias in node.names:
                child = f"{origin}.{alias.name}"
                if child in modules:
                    yield child, node.lineno
                elif origin in modules:
                    yield origin, node.lineno


def _graph() -> tuple[dict[str, Path], dict[str, dict[str, int]]]:
    modules = _modules()
    edges: dict[str, dict[str, int]] = {name: {} for name in modules}
    for name, path in modules.items():
        for target, line in _imports(name, path, modules):
            if target != name:
                edges[name].setdefault(target, line)
    return modules, edges


def _strongly_connected(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (the graph is a few hundred modules deep at most)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def _a_cycle(component: list[str], edges: dict[str, dict[str, int]]) -> list[str]:
    """One concrete circle through the component's first module, for the failure message."""
    members = set(component)
    start = component[0]
    # Breadth-first back to the start, inside the component only.
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(edges[node]):
                if child not in members:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    return component


def _describe(cycle: list[str], modules: dict[str, Path], edges: dict[str, dict[str, int]]) -> str:
    steps = []
    for source, target in zip(cycle, cycle[1:], strict=False):
        where = modules[source].relative_to(REPO)
        steps.append(f"  {where}:{edges[source][target]} imports {target}")
    return "\n".join(steps)


def test_the_import_graph_sees_function_level_and_relative_imports() -> None:
    """The measuring stick itself: it reads imports a plain module scan would miss."""
    modules, edges = _graph()
    assert len(modules) > 100
    # rmbuild/__init__.py imports the loader inside ``load`` (function level), and the CLI's
    # package imports its commands relatively.
    assert any(target.startswith("rmbuild.") for target in edges["rmbuild"])
    assert any(target.startswith("rmbuild.cli.") for target in edges["rmbuild.cli"])
    # rmbuild.build re-exports its children's names on first use: edges to them, none back.
    assert {"rmbuild.build.target", "rmbuild.build.batch"} <= set(edges["rmbuild.build"])
    assert not [m for m in edges if m.startswith("rmbuild.build.") and "rmbuild.build" in edges[m]]


def test_type_checking_imports_are_left_out_and_the_rest_kept() -> None:
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import a\nelse:\n    import b\n"
        "def f():\n    import c\n"
    )
    names = {
        alias.name for n in _runtime_nodes(tree) if isinstance(n, ast.Import) for alias in n.names
    }
    assert names == {"b", "c"}


def test_tarjan_finds_a_planted_circle() -> None:
    edges = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3}, "d": {"a": 4}}
    components = [c for c in _strongly_connected(edges) if len(c) > 1]
    assert components == [["a", "b", "c"]]
    assert _a_cycle(components[0], edges) == ["a", "b", "c", "a"]


def test_no_import_circles() -> None:
    modules, edges = _graph()
    circles = [c for c in _strongly_connected(edges) if len(c) > 1]
    message = []
    for component in circles:
        cycle = _a_cycle(component, edges)
        message.append(
            f"{len(component)} modules import each other: {', '.join(component)}\n"
            f"e.g. {' -> '.join(cycle)}\n{_describe(cycle, modules, edges)}"
        )
    assert not circles, "import circles:\n" + "\n\n".join(message)


def _within(target: str, prefixes: tuple[str, ...]) -> bool:
    return any(target == p or target.startswith(p + ".") for p in prefixes)


def test_the_runtime_imports_no_plugin_backend_or_build_code() -> None:
    modules, edges = _graph()
    bad = [
        f"{modules[name].relative_to(REPO)}:{line} imports {target}"
        for name in sorted(edges)
        if _within(name, (RUNTIME,))
        for target, line in sorted(edges[name].items())
        if _within(target, FORBIDDEN_FOR_RUNTIME)
    ]
    assert not bad, "the runtime climbs up:\n" + "\n".join(bad)


def test_the_store_imports_nothing_from_rmbuild() -> None:
    modules, edges = _graph()
    bad = [
        f"{modules[name].relative_to(REPO)}:{line} imports {target}"
        for name in sorted(edges)
        if _within(name, ("artifact_store",))
        for target, line in sorted(edges[name].items())
        if _within(target, ("rmbuild",))
    ]
    assert not bad, "artifact_store imports rmbuild:\n" + "\n".join(bad)
