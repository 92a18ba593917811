"""The node knows nothing of HTTP: no module of ``symphony.node`` imports ``symphony.api`` (not even
for types, not even lazily), and the modules of both packages import each other in no circle."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import symphony

SRC = Path(symphony.__file__).parent
PACKAGES = ("node", "api")


def imports_of(path: Path) -> set[str]:
    """Every ``symphony.*`` module ``path`` imports, wherever the import statement stands."""
    found: set[str] = set()
    for statement in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(statement, ast.Import):
            found.update(alias.name for alias in statement.names)
        elif isinstance(statement, ast.ImportFrom) and statement.module and not statement.level:
            found.add(statement.module)
            found.update(f"{statement.module}.{alias.name}" for alias in statement.names)
    return {name for name in found if name.startswith("symphony.")}


def graph() -> dict[str, set[str]]:
    """Module -> the modules of ``PACKAGES`` it imports, for every module of ``PACKAGES``."""
    modules = {f"symphony.{package}.{path.stem}": path
               for package in PACKAGES for path in (SRC / package).glob("*.py") if path.stem != "__init__"}
    return {name: imports_of(path) & modules.keys() for name, path in modules.items()}


def test_the_node_never_imports_the_api() -> None:
    """No module of ``symphony.node`` imports any of ``symphony.api``."""
    upward = {name: sorted(target for target in targets if target.startswith("symphony.api."))
              for name, targets in graph().items() if name.startswith("symphony.node.")}
    assert {name: targets for name, targets in upward.items() if targets} == {}


def test_no_import_circle_between_node_and_api_modules() -> None:
    """The modules of both packages can be ordered so that each imports only earlier ones."""
    order = list(graphlib.TopologicalSorter(graph()).static_order())  # CycleError names the circle
    assert order.index("symphony.node.daemon") < order.index("symphony.api.server")
