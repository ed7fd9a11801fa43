"""The README's Quick start has what plain Debian 12 needs, in blocks that
packaging/check-quickstart.sh runs verbatim in a fresh Debian (by hand: it takes minutes)."""
from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import fanout
from fanout import cli
from tests.support.server import icecast_xml
from tests.support.waiting import wait_for

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
    assert install[1:] == ["python3 -m venv .venv", ". .venv/bin/activate", "pip install -e ."]


def test_run_block_names_the_port_fanout_defaults_to():
    # The quick start runs as root: fanout refuses that without --allow-root.
    assert quickstart_blocks()["run"] == [f"fanout --port {cli.parse_args([]).port} --allow-root"]


def test_package_and_module_versions_agree():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["version"] == fanout.__version__


def test_version_option_prints_the_version():
    result = subprocess.run([sys.executable, "-m", "fanout", "--version"], capture_output=True,
                            text=True, timeout=30, cwd=REPO)
    assert (result.returncode, result.stdout) == (0, f"fanout {fanout.__version__}\n")


def test_workers_import_the_fanout_the_supervisor_runs(tmp_path):
    """`pip install .` and then `fanout` in the checkout: the console script imports the
    installed package, but `python -m` puts the working directory first on a worker's
    sys.path, where the checkout's fanout/ has no compiled core. Here the working directory
    holds a fanout/ that cannot be imported at all, and the console script is a launcher
    that finds the real package on PYTHONPATH, as the installed one is on site-packages."""
    (tmp_path / "fanout").mkdir()
    (tmp_path / "fanout" / "__init__.py").write_text(
        'raise ImportError("the fanout/ of the working directory")\n')
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "fanout").write_text("import sys\nfrom fanout.cli import main\nsys.exit(main())\n")
    (tmp_path / "icecast.xml").write_text(icecast_xml())
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, str(tmp_path / "bin" / "fanout"), "-c", "icecast.xml",
                             "--workers", "1", "--allow-root"], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert proc.stdout is not None
        output = "".join(iter_until(proc, "booted (pid", "stopping the server"))
        assert "worker 0 booted" in output and proc.poll() is None, output
    finally:
        proc.terminate()
        proc.wait(10)


def iter_until(proc: subprocess.Popen[str], *endings: str):
    """The process's output lines up to the first one containing one of `endings`."""
    assert proc.stdout is not None
    for line in proc.stdout:
        yield line
        if any(ending in line for ending in endings):
            return
