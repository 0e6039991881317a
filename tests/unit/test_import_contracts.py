"""The layer contracts of ``.importlinter`` (issue 15, item 7): the tree keeps them, and they bite.

A contract that nothing could break proves nothing, so one test copies the package, adds an
import the layers forbid (the runtime reaching up into the store) and expects ``lint-imports``
to fail on that copy, naming the import.  The contracts themselves and their reasons are in
``.importlinter`` and ``docs/architecture.md``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter", reason="import-linter is not installed (pip install -e '.[test]')")
import grimp  # import-linter's graph builder, installed with it

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "pytest_minicontainer"
CONFIG = ROOT / ".importlinter"


def lint_imports(where: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` over the package in ``where`` with the ``.importlinter`` found there (no
    cache written), as CI runs it from the checkout."""
    env = {**os.environ, "PYTHONPATH": str(where), "COLUMNS": "250"}  # a report line per line
    return subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()",
         "--no-cache"],
        cwd=where, env=env, capture_output=True, text=True, timeout=120,
    )


def test_the_tree_keeps_every_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in " ".join(result.stdout.split())


def test_a_back_import_from_the_runtime_into_the_store_breaks_the_contracts(tmp_path: Path) -> None:
    copy = tmp_path / PACKAGE
    shutil.copytree(ROOT / PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(CONFIG, tmp_path)
    (copy / "runtime" / "_back_import.py").write_text(
        '"""A deliberate layer violation."""\n\nfrom ..store import Store\n\n__all__ = ["Store"]\n'
    )
    result = lint_imports(tmp_path)
    out = " ".join(result.stdout.split())  # the report wraps long lines at the terminal's width
    assert result.returncode != 0, out + result.stderr
    # the copy was the one analysed, and both the runtime's own contract and the layers caught it
    assert f"{PACKAGE}.runtime._back_import -> {PACKAGE}.store" in out
    assert "The runtime knows nothing of OCI, the store, builds, compose or pytest BROKEN" in out
    assert "Layers: each module imports only the layers below it BROKEN" in out


def test_compose_imports_only_what_a_user_imports() -> None:
    """import-linter forbids the internals by name; this is the list of what compose may use:
    the package's exports, its errors and its readiness waits (annotations included)."""
    graph = grimp.build_graph(PACKAGE)
    allowed = {PACKAGE, f"{PACKAGE}.errors", f"{PACKAGE}.wait"}
    compose = f"{PACKAGE}.compose"
    used = {
        imported
        for module in graph.find_descendants(compose) | {compose}
        for imported in graph.find_modules_directly_imported_by(module)
        if not (imported == compose or imported.startswith(compose + "."))
    }
    assert used <= allowed, f"compose imports {sorted(used - allowed)}: use the package's exports instead"


def test_annotations_keep_the_runtime_and_the_store_apart() -> None:
    """``.importlinter`` leaves out imports under ``TYPE_CHECKING`` (annotations import nothing
    at run time); the separation of runtime, store and images holds for annotations too."""
    graph = grimp.build_graph(PACKAGE, include_external_packages=True)  # TYPE_CHECKING imports included
    forbidden = {
        f"{PACKAGE}.store": (f"{PACKAGE}.runtime",),
        f"{PACKAGE}.images": (f"{PACKAGE}.runtime",),
        f"{PACKAGE}.runtime": (*(f"{PACKAGE}.{n}" for n in ("images", "store", "build", "compose")), "pytest"),
    }
    found = [
        f"{module} -> {imported}"
        for source, banned in forbidden.items()
        for module in graph.find_descendants(source) | {source}
        for imported in graph.find_modules_directly_imported_by(module)
        if any(imported == b or imported.startswith(b + ".") for b in banned)
    ]
    assert not found, found


def _rooms_in_circles(graph: grimp.ImportGraph) -> list[set[str]]:
    """The circles between the package's rooms (a subpackage counts as one room, a top-level
    module as one), from the imports that run (annotations left out): strongly connected
    components of more than one room."""
    def room(module: str) -> str:
        parts = module.split(".")
        return ".".join(parts[:2]) if len(parts) > 2 or (len(parts) == 2 and parts[1] in _PACKAGES) else module

    edges: dict[str, set[str]] = {}
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            if room(module) != room(imported):
                edges.setdefault(room(module), set()).add(room(imported))
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[set[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm; the graph has a few dozen rooms
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                top = stack.pop()
                component.add(top)
                if top == node:
                    break
            if len(component) > 1:
                circles.append(component)

    for node in list(edges):
        if node not in index:
            visit(node)
    return circles


_PACKAGES = ("runtime", "store", "images", "build", "compose")


def test_no_import_circle_between_rooms() -> None:
    """Issue 15's "no import circle": also the lazy imports inside functions (the layers
    contract lets the Engine's build()/compose() doors point up; nothing may point back)."""
    graph = grimp.build_graph(PACKAGE, exclude_type_checking_imports=True, cache_dir=None)
    assert _rooms_in_circles(graph) == []


def test_the_circle_finder_sees_a_circle() -> None:
    """The finder itself: build's CLI importing the engine back (as it once did) is a circle."""
    graph = grimp.build_graph(PACKAGE, exclude_type_checking_imports=True, cache_dir=None)
    graph.add_import(importer=f"{PACKAGE}.build._build", imported=f"{PACKAGE}.engine")
    assert {f"{PACKAGE}.build", f"{PACKAGE}.engine"} in [c & {f"{PACKAGE}.build", f"{PACKAGE}.engine"}
                                                           for c in _rooms_in_circles(graph)]
