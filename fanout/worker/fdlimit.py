"""A worker near its open-file limit refuses new clients cheaply and never stalls.

Theory of operation:
- High water: a connection accepted on an fd ≥ limit − FD_HEADROOM (the kernel hands out
  the lowest free fd, so at least that many are open) is answered 503 and closed at once,
  before any greenlet or parsing. The headroom stays free for what the worker needs to
  go on serving the clients it has: rings from the supervisor, log files, auth requests.
- Reserve (the spare-fd trick of nginx and libev's notes): one spare fd is held open.
  When accept fails with EMFILE or ENFILE the spare is closed, the waiting connection
  accepted, answered 503 and closed, and the spare reopened; so the listening socket's
  queue drains and the accept loop neither spins on a connection it cannot take nor dies.
  If even that fails, accepting pauses for ACCEPT_PAUSE s.
- Refusing is logged once when it starts (per cause) and once, summarised with the number
  refused, when a client is accepted again.
"""
from __future__ import annotations

import errno
import logging
import os
import resource
import socket
import time
from typing import Callable, Protocol

from gevent.hub import get_hub
from gevent.socket import socket as GeventSocket

from fanout.protocol.responses import render_error

log = logging.getLogger("fanout.worker")

# Fds kept free below the open-file limit for the worker's own needs (rings arriving on
# the control channel, log files, url-auth and admin connections).
FD_HEADROOM = 32
# Seconds accepting pauses when not even the reserve fd frees a slot (ENFILE: the whole
# system is out of files).
ACCEPT_PAUSE = 0.5
# Bytes of a refused client's request read (and dropped) before closing, so that the
# close sends FIN rather than RST and the client reads the 503.
DRAIN_BYTES = 4096
REFUSAL = "Server busy: out of file descriptors, try again later"
# accept() errors that are the waiting client's, not ours: skip that connection.
CLIENT_ACCEPT_ERRORS = (errno.ECONNABORTED, errno.EPROTO, errno.EPERM)


class Accepting(Protocol):
    """The accepting server (`server.ClientServer`: a gevent StreamServer)."""

    socket: GeventSocket
    started: bool
    resume_timer: object

    def stop_accepting(self) -> None: ...
    def start_accepting(self) -> None: ...


def open_file_limit() -> int:
    """This process's soft RLIMIT_NOFILE (re-read: `prlimit` may change it from outside)."""
    return int(resource.getrlimit(resource.RLIMIT_NOFILE)[0])


class FdGuard:
    """One per worker: the reserve fd and the refusing state, shared by its servers.
    `on_refused(503)` is called for each client refused (the worker's tallies)."""

    def __init__(self, on_refused: Callable[[int], None], server_id: str = "fanout") -> None:
        self.on_refused = on_refused
        self.server_id = server_id
        self.reserve: int | None = None
        self.cause: str | None = None  # why new clients are refused now, if they are
        self.refused = 0  # since refusing started
        self.reopen_reserve()

    def reopen_reserve(self) -> None:
        if self.reserve is None:
            try:
                self.reserve = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                self.reserve = None  # tried again at the next refusal

    def over_high_water(self, fd: int) -> bool:
        return fd >= open_file_limit() - FD_HEADROOM

    def accepted(self) -> None:
        """A client was let in: if we were refusing, say how many were refused."""
        if self.cause is not None:
            log.warning("refused %d new clients with 503 (%s); accepting again",
                        self.refused, self.cause)
            self.cause, self.refused = None, 0

    def refuse(self, fd: int, cause: str) -> None:
        """Answer the connection on `fd` 503 and close it; log when refusing starts."""
        if self.cause != cause:
            log.warning("%s (%d files): refusing new clients with 503 until fds are free",
                        cause, open_file_limit())
            self.cause = cause
        self.refused += 1
        self.on_refused(503)
        sock = socket.socket(fileno=fd)
        try:
            try:
                sock.recv(DRAIN_BYTES, socket.MSG_DONTWAIT)
            except BlockingIOError:
                pass  # the request is not here yet
            sock.send(render_error(503, REFUSAL, server_id=self.server_id, now=time.time()),
                      socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)
        except OSError:
            pass  # the client is gone already
        finally:
            sock.close()

    def accept_failed(self, server: Accepting, exc: OSError) -> None:
        """accept() on `server`'s socket raised `exc`: refuse the client through the
        reserve fd (EMFILE, ENFILE), skip it (its own error) or re-raise."""
        if exc.errno in CLIENT_ACCEPT_ERRORS:
            return
        if exc.errno not in (errno.EMFILE, errno.ENFILE):
            raise exc
        cause = "open-file limit reached" if exc.errno == errno.EMFILE else "system file table full"
        if self.reserve is not None:
            os.close(self.reserve)
            self.reserve = None
        try:
            fd, _address = server.socket._accept()
        except BlockingIOError:
            fd = None  # another worker took it
        except OSError:
            fd = -1
        if fd is not None and fd >= 0:
            self.refuse(fd, cause)
        self.reopen_reserve()
        if fd == -1 or self.reserve is None:
            pause_accepting(server)


def pause_accepting(server: Accepting) -> None:
    """Stop accepting on `server` for ACCEPT_PAUSE s (its queue waits in the kernel)."""
    server.stop_accepting()
    timer = get_hub().loop.timer(ACCEPT_PAUSE)  # the server's loop: this thread's hub's
    server.resume_timer = timer  # keep it referenced until it fires
    timer.start(_resume_accepting, server)


def _resume_accepting(server: Accepting) -> None:
    if server.started:
        server.start_accepting()
