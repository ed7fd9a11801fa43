"""The accept loop: one gevent StreamServer per inherited listening socket.

Several workers accept on the same sockets (`max_accept = 1` spreads the kernel's
wake-ups over them). Near its open-file limit a worker answers new clients 503 at once
instead of accepting them (`fdlimit.py`). Every accepted connection is handed to
`connection.serve_connection`; a socket the pump took over is left open when that returns.
"""
from __future__ import annotations

import socket

from gevent.server import StreamServer
from gevent.socket import socket as GeventSocket

from fanout.config import ListenSocket
from fanout.worker.connection import serve_connection
from fanout.worker.certificates import Certificates
from fanout.worker.fdlimit import FdGuard
from fanout.worker.state import Worker


def spec_of_listener(specs: tuple[ListenSocket, ...], index: int, bound_port: int) -> ListenSocket:
    """The <listen-socket> the `index`-th inherited socket, bound to `bound_port`, was made for.

    The supervisor binds `config.listen_sockets` in order and passes the fds in that order,
    so the index says it (a port-0 spec binds any port). Should the config have changed
    since (a SIGHUP cannot rebind sockets), the first spec with the bound port is taken,
    else a plain HTTP socket: never a Shoutcast port by mistake.
    """
    if index < len(specs) and specs[index].port in (0, bound_port):
        return specs[index]
    same_port = [spec for spec in specs if spec.port == bound_port]
    return same_port[0] if same_port else ListenSocket(port=bound_port)


class ClientServer(StreamServer):  # type: ignore[misc]  # gevent ships no type hints
    """gevent's StreamServer, except that a socket handed to the pump stays open."""

    # Several workers accept on the same socket: take one connection per wake-up so the
    # kernel's wake-ups spread new clients over the workers.
    max_accept = 1

    def __init__(self, listener: socket.socket, worker: Worker, guard: FdGuard,
                 spec: ListenSocket, certificates: Certificates) -> None:
        super().__init__(listener, self.handle_client)
        self.worker = worker
        self.guard = guard
        self.spec = spec  # the <listen-socket> this socket was bound for (shoutcast-compat …)
        self.certificates = certificates  # issue 12: TLS and trusted proxies (edge.py)
        self.kept: set[GeventSocket] = set()

    def do_read(self) -> tuple[GeventSocket, tuple[str, int]] | None:
        """Accept one connection, unless the worker is near its open-file limit: then the
        client is answered 503 at once (`fdlimit.py`). gevent's own accept would raise on
        EMFILE, print a traceback and retry without ever draining the queue."""
        guard = self.guard
        try:
            fd, address = self.socket._accept()
        except BlockingIOError:
            return None  # another worker was faster
        except OSError as exc:
            guard.accept_failed(self, exc)
            return None
        if guard.over_high_water(fd):
            guard.refuse(fd, "near the open-file limit")
            return None
        guard.accepted()
        sock = self.socket
        return GeventSocket(sock.family, sock.type, sock.proto, fileno=fd), address

    def handle_client(self, sock: GeventSocket, address: tuple[str, int]) -> None:
        serve_connection(self.worker, self, sock, address)

    def keep(self, sock: GeventSocket) -> None:
        self.kept.add(sock)

    def do_close(self, sock: GeventSocket, *args: object) -> None:
        if sock in self.kept:
            self.kept.discard(sock)
        else:
            sock.close()
