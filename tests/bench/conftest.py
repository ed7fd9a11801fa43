"""Fixtures of the bench tests: a real Icecast 2.4.4, and tiny fake stream servers."""
from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from fanout.bench.icecast import ICECAST_USER
from fanout.bench.scenarios import Scenario, load_scenarios, with_overrides

TINY_MOUNTS = 3
TINY_LISTENERS = 2  # per mount
SERVER_SCENARIOS = sorted(n for n, s in load_scenarios().items() if s.kind == "server")


def tiny(scenario: Scenario, duration: float = 1.0) -> Scenario:
    """``scenario`` at the smallest size that still has its shape: at most 3 mounts and
    2 listeners per mount (none if it has none), one run of ``duration`` s."""
    step = scenario.steps[0]
    return with_overrides(scenario, listeners=[min(step.listeners, TINY_LISTENERS)] if step.listeners else None,
                          duration=duration, runs=1, mounts=min(step.mounts, TINY_MOUNTS))


def icecast_available() -> bool:
    return shutil.which("icecast2") is not None


needs_icecast = [
    pytest.mark.interop,
    pytest.mark.skipif(not icecast_available(), reason="icecast2 not installed"),
]


@pytest.fixture(scope="module")
def fanout_server():
    """fanout with two workers, started by the bench's own hook, for the whole module."""
    from fanout.bench.servers import start_server

    server = start_server("fanout", workers=2)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def icecast():
    """A real Icecast started by the bench's own hook, for the whole module."""
    from fanout.bench.servers import start_server

    try:
        server = start_server("icecast")
    except Exception as exc:  # a host without the icecast2 user, etc.
        pytest.skip(f"icecast2 could not be started ({ICECAST_USER}): {exc}")
    yield server
    server.stop()


class CannedServer:
    """Answers every connection with the same bytes, then holds it open until closed.

    ``delay``: seconds to wait after the request head before answering (a slow server);
    ``close``: close each connection once answered. ``requests`` keeps the request
    lines received."""

    def __init__(self, response: bytes, delay: float = 0.0, close: bool = False) -> None:
        self.response = response
        self.delay = delay
        self.close_after = close
        self.requests: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        try:
            head = conn.recv(4096)  # the request head (small, one segment on loopback)
            self.requests.append(head.split(b"\r\n", 1)[0])
            if self.delay:
                time.sleep(self.delay)  # the slowness under test, not synchronisation
            conn.sendall(self.response)
            if self.close_after:
                conn.close()
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()
        for conn in self._conns:
            conn.close()


@pytest.fixture
def canned_server() -> Iterator:
    servers: list[CannedServer] = []

    def make(response: bytes, **options) -> CannedServer:
        servers.append(CannedServer(response, **options))
        return servers[-1]

    yield make
    for server in servers:
        server.close()
