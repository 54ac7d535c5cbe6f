"""The layers, checked by reading the source (static import analysis, nothing is imported).

Imports point one way: front ends → engines/trainers → core → contract, and
no module of ``napari_i2i``, ``engines`` or ``trainers`` takes part in an
import cycle. Imports under ``if TYPE_CHECKING:`` never run and do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("napari_i2i", "engines", "trainers")
# What each layer may import from the project (prefixes of module names); the package
# roots' __init__ modules count as their package's layer.
ALLOWED = {
    "napari_i2i.contract": ("napari_i2i.contract", "napari_i2i"),
    "napari_i2i.core": ("napari_i2i.contract", "napari_i2i.core", "napari_i2i"),
    "engines": ("napari_i2i.contract", "engines", "napari_i2i"),
    "trainers": ("napari_i2i.contract", "napari_i2i.core", "engines", "trainers", "napari_i2i"),
    "napari_i2i.frontends": (
        "napari_i2i.contract", "napari_i2i.core", "napari_i2i.frontends", "engines", "trainers", "napari_i2i",
    ),
}
GUI_MODULES = ("napari", "magicgui", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "superqt", "vispy")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_names(path: Path, module: str) -> set[str]:
    """Every module name an import statement in *path* mentions (``from a import b`` gives
    ``a`` and ``a.b``), wherever the statement is, except under ``if TYPE_CHECKING:``."""
    is_package = path.name == "__init__.py"
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return names


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {
        module: {name for name in imported_names(path, module) if name in modules and name != module}
        for module, path in modules.items()
    }


def layer_of(module: str) -> str | None:
    for layer in sorted(ALLOWED, key=len, reverse=True):
        if module == layer or module.startswith(layer + "."):
            return layer
    return None


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_the_analysis_sees_the_known_imports():
    graph = import_graph()
    assert "napari_i2i.contract.engine_api" in graph["engines.munit.engine"]
    assert "trainers.run" in graph["napari_i2i.frontends.cli.train"]  # inside a function
    assert "napari_i2i.contract.registry" not in graph["napari_i2i.contract.hookspecs"]  # TYPE_CHECKING


def test_no_import_cycle_between_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " → ".join(cycle)


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_imports_point_one_way(layer):
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        if layer_of(module) == layer
        for target in targets
        if target != "napari_i2i" and not any(
            target == allowed or target.startswith(allowed + ".") for allowed in ALLOWED[layer] if allowed != "napari_i2i"
        )
    )
    assert not wrong, "\n".join(wrong)


def test_every_module_belongs_to_a_layer():
    modules = [m for m in project_modules() if m not in PACKAGES and m != "napari_i2i.__main__"]
    assert [m for m in modules if layer_of(m) is None] == []


def test_qt_and_napari_only_in_front_ends():
    modules = project_modules()
    wrong = sorted(
        f"{module} imports {name}"
        for module, path in modules.items()
        if layer_of(module) not in (None, "napari_i2i.frontends")
        for name in imported_names(path, module)
        if name.split(".")[0] in GUI_MODULES
    )
    assert not wrong, "\n".join(wrong)
