"""Layers point one way: the pure layers import no IO layer and no third-party IO library."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "fanout"

# What each pure layer may import besides the standard library.
ALLOWED = {
    "protocol": {"fanout.protocol"},
    "model": {"fanout.model", "fanout.protocol"},
    "config": {"fanout.config", "xmltodict"},
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            names.add(f"fanout.{path.parent.name}")  # relative: its own package
    return names


def is_allowed(module: str, allowed: set[str]) -> bool:
    top = module.split(".")[0]
    if top in sys.stdlib_module_names and top != "fanout":
        return True
    return any(module == a or module.startswith(a + ".") for a in allowed)


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_pure_layer_imports_only_what_it_may(layer):
    offenders = [f"{path.name}: {module}"
                 for path in sorted((PACKAGE / layer).glob("*.py"))
                 for module in sorted(imported_modules(path))
                 if not is_allowed(module, ALLOWED[layer])]
    assert offenders == []


def test_layering_check_sees_a_forbidden_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import gevent\nfrom fanout.worker import worker\n")
    assert {m for m in imported_modules(bad) if not is_allowed(m, ALLOWED["protocol"])} == {
        "gevent", "fanout.worker"}
