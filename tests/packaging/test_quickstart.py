"""The README's Quick start has what plain Debian 12 needs, in blocks that
packaging/check-quickstart.sh runs verbatim in a fresh Debian (by hand: it takes minutes)."""
from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import fanout
from fanout import cli

REPO = Path(__file__).resolve().parents[2]
CHECK = REPO / "packaging" / "check-quickstart.sh"


def quickstart_blocks() -> dict[str, list[str]]:
    """The install and run commands as the check script extracts them from README.md."""
    printed = subprocess.run(["bash", str(CHECK), "--print"], capture_output=True, text=True,
                             check=True, timeout=30).stdout
    blocks: dict[str, list[str]] = {}
    for line in printed.splitlines():
        if line.startswith("# "):
            current = blocks.setdefault(line[2:], [])
        else:
            current.append(line.split("#")[0].strip())
    return blocks


def test_install_block_uses_what_debian_12_has():
    install = quickstart_blocks()["install"]
    assert install[0] == "apt-get update && apt-get install -y python3 python3-venv python3-dev gcc"
    assert install[1:] == ["python3 -m venv .venv", ". .venv/bin/activate", "pip install ."]


def test_run_block_names_the_port_fanout_defaults_to():
    assert quickstart_blocks()["run"] == [f"fanout --port {cli.parse_args([]).port}"]


def test_package_and_module_versions_agree():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["version"] == fanout.__version__


# Remove this mark once cli.py has --version (strict: the test then fails until it is removed).
@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="fanout/cli.py has no --version yet (integrator: see the report)")
def test_version_option_prints_the_version():
    result = subprocess.run([sys.executable, "-m", "fanout", "--version"], capture_output=True,
                            text=True, timeout=30, cwd=REPO)
    assert (result.returncode, result.stdout) == (0, f"fanout {fanout.__version__}\n")
