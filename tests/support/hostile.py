"""A hostile HTTP peer for adversarial tests: a real server on 127.0.0.1 (port 0) whose
every connection is served, in a thread of its own, by a handler that may send anything.

The handler gets the connection and the request's first line once the request head has
arrived, and answers as it likes: `answer` (bytes, then close), `endless`, `trickle`,
`silent`, `stream_pattern`. A connection is closed when its handler returns; `close()`
ends every connection still open. A mount that a fanout relays from such a peer's
pattern stream is watched by `RelayListeners`, checked as a Bystander's listeners are.
"""
from __future__ import annotations

import socket
import threading
from typing import Any, Callable

from tests.support.bystander import LISTENERS, Bystander
from tests.support.clients import Listener, pattern

Handler = Callable[[socket.socket, str], None]
# A request head larger than this is not a client of ours: the connection is dropped.
MAX_REQUEST = 65536
# The head of a pattern stream (`stream_pattern`).
AUDIO_HEAD = b"HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n"


class HostileServer:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=1024)
        self.host, self.port = self.sock.getsockname()[:2]
        self.requests: list[str] = []  # request lines, in the order they arrived
        self.stopping = threading.Event()
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def served(self, prefix: str) -> int:
        """How many requests so far had a request line starting with `prefix`."""
        return sum(line.startswith(prefix) for line in list(self.requests))

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.open.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            head = b""
            while b"\r\n\r\n" not in head and len(head) < MAX_REQUEST:
                data = conn.recv(4096)
                if not data:
                    return
                head += data
            line = head.split(b"\r\n", 1)[0].decode("latin-1")
            self.requests.append(line)
            self.handler(conn, line)
        except OSError:
            pass  # the client gave up: what a hostile peer is for
        finally:
            with self.lock:
                self.open.discard(conn)
            conn.close()

    def close(self) -> None:
        self.stopping.set()
        self.sock.close()
        with self.lock:
            for conn in self.open:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def path_of(line: str) -> str:
    """The request-target of a request line."""
    parts = line.split(" ")
    return parts[1] if len(parts) > 1 else ""


# -- what a handler may do with a connection ---------------------------------------------------

def answer(conn: socket.socket, data: bytes) -> None:
    """Send `data`; the connection closes when the handler returns."""
    conn.sendall(data)


def endless(conn: socket.socket, prefix: bytes, chunk: bytes, stopping: threading.Event) -> None:
    """Send `prefix`, then `chunk` again and again until the client gives up."""
    conn.sendall(prefix)
    while not stopping.is_set():
        conn.sendall(chunk)


def trickle(conn: socket.socket, data: bytes, stopping: threading.Event, pause: float = 1.0) -> None:
    """Send `data` one byte per `pause` seconds (slow loris), until the client gives up."""
    for index in range(len(data)):
        conn.sendall(data[index:index + 1])
        if stopping.wait(pause):  # pacing the peer, not synchronisation
            return


def silent(conn: socket.socket) -> None:
    """Send nothing; hold the connection until the client closes it."""
    while conn.recv(4096):
        pass


def stream_pattern(conn: socket.socket, head: bytes, stopping: threading.Event,
                   chunk: int = 4096, pause: float = 0.01) -> None:
    """Send `head`, then the test pattern (~400 KB/s) until the client goes away."""
    conn.sendall(head)
    sent = 0
    while not stopping.is_set():
        conn.sendall(pattern(sent, chunk))
        sent += chunk
        stopping.wait(pause)  # pacing a producer, not synchronisation


class RelayListeners(Bystander):
    """Listeners of a mount relayed from a pattern stream, checked like a Bystander's
    (`assert_untouched`); their source is upstream, so there is none to feed or close."""

    def __init__(self, server: Any, mount: str, listeners: int = LISTENERS) -> None:
        self.listeners = [Listener(server.host, server.port, mount).start()
                          for _ in range(listeners)]
        self.marks = [0] * listeners
        self.failed = None
        self.assert_untouched()

    def close(self) -> None:
        for listener in self.listeners:
            listener.close()
