"""Start a real fanout server process for a test and find out where it listens."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from tests.support.waiting import wait_for

SOURCE_PASSWORD = "hackme-source"
ADMIN_PASSWORD = "hackme-admin"
RELAY_PASSWORD = "hackme-relay"

LISTEN_LINE = re.compile(r"listening on http://([\d.]+):(\d+)/")


def icecast_xml(port: int = 0, limits: str = "", mounts: str = "", extra: str = "",
                sources: int = 8, address: str = "127.0.0.1", source_timeout: int = 3) -> str:
    """A small icecast.xml for tests, bound to and named by `address`; port 0 lets the
    kernel choose. A short `source_timeout` lets tests see idle sources go; tests whose
    sources pause between steps (a loaded machine stretches the pause) pass a long one."""
    return f"""<icecast>
  <hostname>{address}</hostname>
  <limits>
    <clients>500</clients>
    <sources>{sources}</sources>
    <header-timeout>3</header-timeout>
    <source-timeout>{source_timeout}</source-timeout>
    {limits}
  </limits>
  <authentication>
    <source-password>{SOURCE_PASSWORD}</source-password>
    <admin-user>admin</admin-user>
    <admin-password>{ADMIN_PASSWORD}</admin-password>
    <relay-password>{RELAY_PASSWORD}</relay-password>
  </authentication>
  <listen-socket><port>{port}</port><bind-address>{address}</bind-address></listen-socket>
  {mounts}
  {extra}
</icecast>
"""


@dataclass
class FanoutProcess:
    """A running `python -m fanout`; its output is collected for assertions and debugging."""

    proc: subprocess.Popen[str]
    host: str = ""
    port: int = 0
    lines: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def output(self) -> str:
        return "".join(self.lines)

    def workers(self) -> list[psutil.Process]:
        return [p for p in psutil.Process(self.proc.pid).children() if p.is_running()]

    def wait_workers(self, count: int, timeout: float = 10.0) -> list[psutil.Process]:
        """The worker processes, once `count` of them have said `booted`."""
        wait_for(lambda: self.output().count("booted (pid") >= count, timeout,
                 f"{count} workers booted")
        return self.workers()

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def start_fanout(config_text: str | None, tmp_path: Path, workers: int = 2,
                 args: tuple[str, ...] = (), prefix: Sequence[str] = ()) -> FanoutProcess:
    """Start `python -m fanout` (under the command `prefix`, e.g. `ip netns exec NAME`) and
    return it once its workers booted; a server that does not come up is stopped.

    Tests run as root, which fanout (as Icecast) refuses without <changeowner>: the
    server gets --allow-root."""
    cmd = [*prefix, sys.executable, "-m", "fanout", "--allow-root", "--workers", str(workers),
           *args]
    if config_text is not None:
        path = tmp_path / "icecast.xml"
        path.write_text(config_text)
        cmd += ["-c", str(path)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=Path(__file__).resolve().parents[2])
    server = FanoutProcess(proc)
    threading.Thread(target=_collect, args=(server,), daemon=True).start()
    try:
        wait_for(lambda: LISTEN_LINE.search(server.output()) or proc.poll() is not None, 20,
                 "the listen line")
        match = LISTEN_LINE.search(server.output())
        if match is None:
            raise RuntimeError(f"fanout did not start (status {proc.poll()}):\n{server.output()}")
        server.host, server.port = match.group(1), int(match.group(2))
        server.wait_workers(workers)
    except BaseException:
        server.stop()
        raise
    return server


def _collect(server: FanoutProcess) -> None:
    assert server.proc.stdout is not None
    for line in server.proc.stdout:
        server.lines.append(line)
        if os.environ.get("FANOUT_TEST_ECHO"):
            sys.stderr.write(line)


def worker_of(server: FanoutProcess, client_port: int) -> psutil.Process | None:
    """The worker process holding the server side of the client connection from `client_port`."""
    for worker in server.workers():
        try:
            connections = worker.net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            continue
        if any(c.raddr and c.raddr.port == client_port for c in connections):
            return worker
    return None


def exited(process: psutil.Process) -> bool:
    """Whether `process` has exited: gone, or a zombie (its fds are closed by then). Its
    parent may reap it between two looks, so NoSuchProcess means exited too."""
    try:
        return bool(process.status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True
