"""Fixtures of the bench tests: a real Icecast 2.4.4, and tiny fake stream servers."""
from __future__ import annotations

import shutil
import socket
import threading
from collections.abc import Iterator

import pytest

from fanout.bench.icecast import ICECAST_USER


def icecast_available() -> bool:
    return shutil.which("icecast2") is not None


needs_icecast = [
    pytest.mark.interop,
    pytest.mark.skipif(not icecast_available(), reason="icecast2 not installed"),
]


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
    """Answers every connection with the same bytes, then holds it open until closed."""

    def __init__(self, response: bytes) -> None:
        self.response = response
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
            conn.recv(4096)  # the request head (small, one segment on loopback)
            conn.sendall(self.response)
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()
        for conn in self._conns:
            conn.close()


@pytest.fixture
def canned_server() -> Iterator:
    servers: list[CannedServer] = []

    def make(response: bytes) -> CannedServer:
        servers.append(CannedServer(response))
        return servers[-1]

    yield make
    for server in servers:
        server.close()
