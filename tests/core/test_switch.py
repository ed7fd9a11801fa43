"""fanout.core is the one switch: compiled by default, the reference only when asked,
and never a silent fallback."""
from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import IMPLEMENTATIONS

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter (no import caching) from the repository root."""
    environ = {k: v for k, v in os.environ.items() if k != "FANOUT_CORE"}
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT),
                                                          environ.get("PYTHONPATH")]))
    environ.update(env)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=60)


SHOW = "import fanout.core as c; print(c.IMPLEMENTATION, c.Ring.__module__, c.send_many.__module__)"


def test_compiled_core_is_built_and_importable():
    module = importlib.import_module("fanout._core")
    assert module.__file__ is not None and module.__file__.endswith(".so")


def test_production_imports_the_compiled_core():
    result = run_python(SHOW)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["compiled", "fanout._core", "fanout._core"]


def test_fanout_core_python_selects_the_reference():
    result = run_python(SHOW, FANOUT_CORE="python")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["python", "fanout.coreref", "fanout.coreref"]


def test_missing_compiled_core_fails_loudly():
    result = run_python("import sys; sys.modules['fanout._core'] = None; import fanout.core")
    assert result.returncode != 0
    assert "ImportError: compiled core missing: run pip install ." in result.stderr


def test_unknown_switch_value_is_rejected():
    result = run_python("import fanout.core", FANOUT_CORE="fast")
    assert result.returncode != 0 and "FANOUT_CORE" in result.stderr


def stub_api() -> dict[str, set[str]]:
    """{"": top-level names of fanout/_core.pyi, class name: its public members}."""
    tree = ast.parse((ROOT / "fanout" / "_core.pyi").read_text())
    api: dict[str, set[str]] = {"": set()}
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            api[""].add(node.target.id)
        elif isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            api[""].add(node.name)
        if isinstance(node, ast.ClassDef):
            api[node.name] = {member_name(item) for item in node.body} - {"", "__init__"}
    return api


def member_name(node: ast.stmt) -> str:
    if isinstance(node, ast.FunctionDef):
        return node.name
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return node.target.id
    return ""


@pytest.mark.parametrize("name", sorted(IMPLEMENTATIONS))
def test_both_implementations_expose_the_stubbed_api(name):
    module = importlib.import_module(IMPLEMENTATIONS[name])
    api = stub_api()
    assert len(api[""]) == 20
    assert [n for n in sorted(api[""]) if not hasattr(module, n)] == []
    for cls in ("Ring", "Listener"):
        assert [n for n in sorted(api[cls]) if not hasattr(getattr(module, cls), n)] == []


def test_core_switch_exports_the_same_names_as_the_stub():
    import fanout.core
    assert set(fanout.core.__all__) == stub_api()[""] | {"IMPLEMENTATION"}
