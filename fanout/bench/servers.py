"""The hook that starts a server under test: ``start_server(kind, ...)``.

Both kinds get the same generated icecast.xml (see ``icecast.render_icecast_xml``):

* ``"icecast"``: the real Icecast 2.4.4 (``icecast.start_icecast``).
* ``"fanout"``: ``python -m fanout -c <icecast.xml> --workers N`` from this checkout.

Each returns a ``ServerProcess`` once the listen port answers HTTP, or raises
``ServerStartError`` with the reason and the tail of the server's log.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fanout.bench.icecast import (
    BenchServerConfig, new_config, raise_nofile_limit, start_icecast, write_config,
)
from fanout.bench.serving import ServerProcess

KINDS = ("fanout", "icecast")
REPO_ROOT = Path(__file__).resolve().parents[2]


def start_server(kind: str, workers: int | None = None,
                 config: BenchServerConfig | None = None) -> ServerProcess:
    """Start a server of ``kind`` ("fanout" | "icecast") on loopback; return it serving.

    ``workers`` is fanout's worker count (default: one per core). Raises
    ServerStartError if it cannot be started, ValueError for an unknown kind.
    """
    config = config or new_config()
    if kind == "icecast":
        return start_icecast(config)
    if kind == "fanout":
        return start_fanout(config, workers or os.cpu_count() or 1)
    raise ValueError(f"unknown server kind {kind!r} (expected one of {', '.join(KINDS)})")


def start_fanout(config: BenchServerConfig, workers: int) -> ServerProcess:
    """Start ``python -m fanout -c <icecast.xml> --workers N``; return it serving."""
    workdir = write_config(config, "fanout-bench-fanout-")
    log_path = workdir / "stdout.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            # CI runs the bench as root, which fanout refuses without <changeowner> (as
            # Icecast does: icecast2 is started as its own user instead).
            [sys.executable, "-m", "fanout", "-c", str(workdir / "icecast.xml"),
             "--workers", str(workers), "--allow-root"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
            env=env, preexec_fn=raise_nofile_limit)
    return ServerProcess("fanout", process, config.host, config.port,
                         config.source_password, workdir, log_path,
                         config.admin_password).serving()
