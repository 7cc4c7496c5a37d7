"""Imports flow one way: backend ← methods ← widgets (and zoo builds on the backend and methods).

Every import in a module is read from its syntax tree, function-level imports included, so a lazy import that
reaches upward fails here as well.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "cnnwidgets"
FORBIDDEN = {
    "backend": {"methods", "zoo", "widgets", "render"},
    "methods": {"zoo", "widgets"},
    "zoo": {"widgets"},
}


def imported_packages(path: Path, package_dir: Path = PACKAGE) -> set[str]:
    """The cnnwidgets subpackages (first name below `cnnwidgets`) that the module at `path` imports."""
    package = path.relative_to(package_dir.parent).with_suffix("").parts[:-1]  # e.g. ("cnnwidgets", "backend")
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                parts = base + (node.module.split(".") if node.module else [])
                if len(parts) == 1:  # `from .. import zoo`: the names are the subpackages
                    found |= {alias.name for alias in node.names}
                    continue
            else:
                parts = (node.module or "").split(".")
            if parts[0] == "cnnwidgets" and len(parts) > 1:
                found.add(parts[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "cnnwidgets" and len(parts) > 1:
                    found.add(parts[1])
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_import_reaches_upward(layer):
    wrong = {
        str(path.relative_to(PACKAGE)): sorted(imported_packages(path) & FORBIDDEN[layer])
        for path in sorted((PACKAGE / layer).rglob("*.py"))
    }
    assert {module: names for module, names in wrong.items() if names} == {}


def test_the_reader_sees_relative_and_lazy_imports(tmp_path):
    """The check itself can fail: a lazy relative import of methods inside a backend function is found."""
    module = tmp_path / "cnnwidgets" / "backend" / "probe.py"
    module.parent.mkdir(parents=True)
    module.write_text("def f():\n    from ..methods.receptive_field import receptive_fields\n    from .. import zoo\n")
    assert imported_packages(module, tmp_path / "cnnwidgets") == {"methods", "zoo"}
