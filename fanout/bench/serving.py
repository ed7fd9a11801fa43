"""A server process under test: free ports, readiness, clean stop.

``ServerProcess`` is what ``servers.start_server`` returns for either kind: the
process, where it listens, the source password, its temp dir (config and logs), and
``stop()``. Readiness is a condition polled with a deadline: the listen port answers
an HTTP request (``GET /status-json.xsl``) with any status line.
"""

from __future__ import annotations

import base64
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

READY_TIMEOUT = 20.0  # s for a server to answer after its start
POLL_INTERVAL = 0.05  # s between two readiness probes
STOP_TIMEOUT = 10.0  # s after SIGTERM before SIGKILL
PROBE_TIMEOUT = 1.0
LOG_TAIL_LINES = 15
ANSWER_LIMIT = 1_000_000  # bytes of an admin answer the bench reads at most


class ServerStartError(RuntimeError):
    """A server could not be started (missing binary, exited, never answered)."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def http_status(host: str, port: int, path: str = "/status-json.xsl") -> int | None:
    """Return the status code the server answers for ``GET path``, or None if it does not."""
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT) as sock:
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode())
            first = sock.recv(256).split(b"\r\n", 1)[0].split()
    except OSError:
        return None
    if len(first) >= 2 and first[1].isdigit():
        return int(first[1])
    return None


def basic_auth(user: str, password: str) -> str:
    """Return the value of an ``Authorization`` header for HTTP Basic auth."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def http_get(host: str, port: int, target: str, user: str, password: str,
             timeout: float = PROBE_TIMEOUT) -> tuple[int | None, bytes]:
    """Return (status, body) of an authenticated ``GET target`` (an admin command, not a
    stream: the answer is read until the server closes). Status None: no valid answer."""
    request = (f"GET {target} HTTP/1.0\r\nHost: {host}:{port}\r\n"
               f"Authorization: {basic_auth(user, password)}\r\n\r\n").encode()
    answer = b""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(request)
            while len(answer) < ANSWER_LIMIT and (chunk := sock.recv(65536)):
                answer += chunk
    except OSError:
        return None, b""
    head, _, body = answer.partition(b"\r\n\r\n")
    first = head.split(b"\r\n", 1)[0].split()
    return (int(first[1]) if len(first) >= 2 and first[1].isdigit() else None), body


@dataclass(slots=True)
class ServerProcess:
    """A started server: ``kind`` is "fanout" or "icecast"."""

    kind: str
    process: subprocess.Popen[bytes]
    host: str
    port: int
    source_password: str
    workdir: Path
    log_path: Path
    admin_password: str = ""  # also its relay password (see icecast.BenchServerConfig)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self) -> str:
        """Return the last lines of the server's output and error log."""
        lines: list[str] = []
        for path in (self.log_path, self.workdir / "error.log"):
            if path.exists():
                lines += path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        return "\n".join(lines)

    def serving(self) -> "ServerProcess":
        """This server once it answers HTTP; if it never does, stop it (keeping its work
        directory and log for a look) and raise ServerStartError."""
        try:
            self.wait_until_serving()
        except ServerStartError:
            self.stop(keep_workdir=True)
            raise
        return self

    def wait_until_serving(self, timeout: float = READY_TIMEOUT) -> None:
        """Return once the server answers HTTP; raise ServerStartError if it dies or never does."""
        deadline = time.monotonic() + timeout
        # Its own socket must be the one answering: a port found free may have been taken
        # by another server meanwhile, and then this one cannot bind it.
        while not self.listens() or http_status(self.host, self.port) is None:
            if self.process.poll() is not None:
                raise ServerStartError(
                    f"{self.kind} exited with status {self.process.returncode} before serving"
                    f"\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise ServerStartError(f"{self.kind} did not answer on {self.host}:{self.port} "
                                       f"within {timeout:.0f} s\n{self.log_tail()}")
            time.sleep(POLL_INTERVAL)  # polling a condition with a deadline

    def listens(self) -> bool:
        """Whether this server's process (or a child of it) listens on its port."""
        try:
            root = psutil.Process(self.process.pid)
            for process in (root, *root.children(recursive=True)):
                for conn in process.net_connections(kind="tcp"):
                    if conn.status == psutil.CONN_LISTEN and conn.laddr.port == self.port:
                        return True
        except psutil.Error:
            pass
        return False

    def stop(self, keep_workdir: bool = False) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and remove its temp dir."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
