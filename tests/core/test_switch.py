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


ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter (no import caching) from the repository root."""
    environ = {k: v for k, v in os.environ.items() if k != "FANOUT_CORE"}
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT),
                                                          environ.get("PYTHONPATH")]))
    environ.update(env)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=60)


SHOW = ("import fanout.core as c; print(c.IMPLEMENTATION, c.Ring.__module__, "
        "c.send_many.__module__, c.Ingest.__module__)")
# What a source's bytes go through in production: the one write path's ingest.
SHOW_FEED = ("import fanout.core as c, fanout.ringio as r; "
             "ring = c.Ring.create(c.ring_capacity_for(0, 0), c.FORMAT_GENERIC); "
             "print(type(r.RingFeed(ring, 'mpeg', label='t').ingest).__module__)")


@pytest.mark.parametrize("name", ["fanout._core", "fanout._ingest"])
def test_compiled_modules_are_built_and_importable(name):
    module = importlib.import_module(name)
    assert module.__file__ is not None and module.__file__.endswith(".so")


def test_production_imports_the_compiled_core():
    result = run_python(SHOW)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["compiled", "fanout._core", "fanout._core", "fanout._ingest"]


def test_sources_and_relays_write_through_the_compiled_ingest_in_production():
    result = run_python(SHOW_FEED)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["fanout._ingest"]


def test_fanout_core_python_selects_the_reference():
    result = run_python(SHOW, FANOUT_CORE="python")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["python", "fanout.coreref", "fanout.coreref", "fanout.ingestref"]


@pytest.mark.parametrize("name", ["fanout._core", "fanout._ingest"])
def test_missing_compiled_module_fails_loudly(name):
    result = run_python(f"import sys; sys.modules[{name!r}] = None; import fanout.core")
    assert result.returncode != 0
    assert "ImportError: compiled core missing: run pip install ." in result.stderr


def test_unknown_switch_value_is_rejected():
    result = run_python("import fanout.core", FANOUT_CORE="fast")
    assert result.returncode != 0 and "FANOUT_CORE" in result.stderr


# Each compiled module, its stub and its pure-Python twin.
STUBS = {"_core.pyi": ("fanout._core", "fanout.coreref"),
         "_ingest.pyi": ("fanout._ingest", "fanout.ingestref")}


def stub_api(stub: str) -> dict[str, set[str]]:
    """{"": top-level names of fanout/<stub>, class name: its public members}."""
    tree = ast.parse((ROOT / "fanout" / stub).read_text())
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


@pytest.mark.parametrize("stub, expected", [("_core.pyi", 26), ("_ingest.pyi", 21)])
@pytest.mark.parametrize("which", [0, 1], ids=["compiled", "python"])
def test_both_implementations_expose_the_stubbed_api(stub, expected, which):
    module = importlib.import_module(STUBS[stub][which])
    api = stub_api(stub)
    assert len(api[""]) == expected
    assert [n for n in sorted(api[""]) if not hasattr(module, n)] == []
    for cls in set(api) - {""}:
        assert [n for n in sorted(api[cls]) if not hasattr(getattr(module, cls), n)] == []


def test_core_switch_exports_the_stubbed_names_it_routes():
    import fanout.core
    ring, ingest = stub_api("_core.pyi")[""], stub_api("_ingest.pyi")[""]
    assert set(fanout.core.RING_NAMES) == ring
    assert set(fanout.core.INGEST_NAMES) <= ingest
    assert set(fanout.core.__all__) == ring | set(fanout.core.INGEST_NAMES) | {"IMPLEMENTATION"}
