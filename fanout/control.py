"""The supervisor <-> worker control channel.

Theory of operation: each worker has one AF_UNIX SOCK_SEQPACKET socketpair with the
supervisor. One `sendmsg` is one message, so no framing is needed; file descriptors (ring
memfds) ride in the same datagram as SCM_RIGHTS. The payload is one pickled message
dataclass of `fanout.messages`. Pickle is safe here because both ends are our own processes and the socket is
only ever inherited by the worker it was made for; it lets frozen config dataclasses cross
without a second serialisation format.

Both ends run a gevent hub, so the socket is a gevent socket and `recv` yields when
nothing is waiting; a reader also yields every YIELD_EVERY messages, so a burst of them
does not hold the hub.

A receiver at its open-file limit gets a message without its fds (the kernel sets
MSG_CTRUNC and drops them): `Delivery.fds_lost` says so, and the receiver asks again
later (`Remount`). Fds a handler does not take are closed by `Delivery.close_fds`, so a
message never leaks one.
"""
from __future__ import annotations

import array
import logging
import os
import pickle
import socket as stdsocket
from dataclasses import dataclass, field
from typing import Callable, Generic, Sequence, TypeVar, cast

import gevent
from gevent import socket as gsocket

from fanout import supervised

log = logging.getLogger("fanout.control")

# Largest message we accept; configs and mount snapshots are far below this.
MAX_MESSAGE = 1 << 20
# At most this many fds in one message (one ring per mount_up).
MAX_FDS = 16
# Messages a reader handles before it lets the rest of its hub run: a recv with a message
# waiting does not yield, so a burst (thousands of MountUps for a new worker) would
# otherwise hold the hub until the last one, with every client of the process waiting.
YIELD_EVERY = 32


@dataclass(slots=True)
class Delivery:
    """One received message and the fds that came with it."""

    message: object  # one of fanout.messages' dataclasses
    fds: list[int] = field(default_factory=list)
    fds_lost: bool = False  # sent with fds that could not be received (MSG_CTRUNC)

    def take_fd(self) -> int | None:
        """The message's (first) fd, now the caller's to close; None if it has none."""
        return self.fds.pop(0) if self.fds else None

    def close_fds(self) -> None:
        """Close the fds nobody took."""
        while self.fds:
            os.close(self.fds.pop())


def make_pair() -> tuple[stdsocket.socket, stdsocket.socket]:
    """Return (supervisor end, worker end); the worker end is inheritable."""
    parent, child = stdsocket.socketpair(stdsocket.AF_UNIX, stdsocket.SOCK_SEQPACKET)
    parent.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_SNDBUF, MAX_MESSAGE)
    child.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_SNDBUF, MAX_MESSAGE)
    child.set_inheritable(True)
    return parent, child


class Channel:
    """One end of a control socketpair."""

    def __init__(self, sock: stdsocket.socket) -> None:
        self.sock = gsocket.socket(fileno=sock.detach()) if not isinstance(sock, gsocket.socket) else sock

    @classmethod
    def from_fd(cls, fd: int) -> "Channel":
        return cls(gsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_SEQPACKET, fileno=fd))

    def send(self, message: object, fds: Sequence[int] = ()) -> None:
        """Send one message (a fanout.messages dataclass); raises OSError if the peer is gone."""
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        ancillary = []
        if fds:
            ancillary = [(stdsocket.SOL_SOCKET, stdsocket.SCM_RIGHTS, array.array("i", fds))]
        self.sock.sendmsg([payload], ancillary)

    def recv(self) -> Delivery | None:
        """Next message, or None when the peer closed its end."""
        fd_size = stdsocket.CMSG_SPACE(MAX_FDS * array.array("i").itemsize)
        data, ancdata, flags, _addr = self.sock.recvmsg(MAX_MESSAGE, fd_size)
        delivery = Delivery(None, _collect_fds(ancdata), bool(flags & stdsocket.MSG_CTRUNC))
        if delivery.fds_lost or not data:
            delivery.close_fds()  # part of a lost set is no use either
        if not data:
            return None
        try:
            delivery.message = pickle.loads(data)
        except BaseException:
            delivery.close_fds()
            raise
        return delivery

    def close(self) -> None:
        self.sock.close()


def read_loop(channel: Channel, dispatch: Callable[[Delivery], None], where: str) -> None:
    """Hand each message to `dispatch` until the peer closes its end or the socket fails.

    A message that cannot be read or handled is reported as an internal error of unit
    `where` and skipped: one bad message costs only itself. Fds the handler did not take
    are closed. Lets the hub run every YIELD_EVERY messages."""
    handled = 0
    while True:
        handled += 1
        if handled % YIELD_EVERY == 0:
            gevent.sleep(0)
        try:
            delivery = channel.recv()
        except OSError:
            return
        except Exception:
            supervised.report(where, "an unreadable control message")
            continue
        if delivery is None:
            return
        try:
            dispatch(delivery)
        except Exception:
            supervised.report(where, f"control message {type(delivery.message).__name__}")
        finally:
            delivery.close_fds()


M = TypeVar("M")
C = TypeVar("C")


class Dispatch(Generic[C]):
    """A message type -> handler table. Each handler gets the message and a context `C`
    (the supervisor: which worker sent it; a worker: the fds that came with it)."""

    def __init__(self, side: str) -> None:
        self.side = side  # who dispatches, for the log line about an unknown type
        self._handlers: dict[type, Callable[[object, C], None]] = {}
        self._unknown: set[type] = set()

    def on(self, kind: type[M], handler: Callable[[M, C], None]) -> None:
        # Safe: `dispatch` looks the handler up by the message's exact type.
        self._handlers[kind] = cast(Callable[[object, C], None], handler)

    def dispatch(self, message: object, context: C) -> None:
        handler = self._handlers.get(type(message))
        if handler is not None:
            handler(message, context)
        elif type(message) not in self._unknown:
            self._unknown.add(type(message))
            log.error("%s: no handler for control message %s; ignored (told once)",
                      self.side, type(message).__name__)


def _collect_fds(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    fds: list[int] = []
    for level, kind, data in ancdata:
        if level == stdsocket.SOL_SOCKET and kind == stdsocket.SCM_RIGHTS:
            arr = array.array("i")
            arr.frombytes(data[: len(data) - (len(data) % arr.itemsize)])
            fds.extend(arr)
    return fds
