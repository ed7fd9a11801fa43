"""The supervisor <-> worker control channel.

Theory of operation: each worker has one AF_UNIX SOCK_SEQPACKET socketpair with the
supervisor. One `sendmsg` is one message, so no framing is needed; file descriptors (ring
memfds) ride in the same datagram as SCM_RIGHTS. The payload is a pickled dict with an
``op`` key. Pickle is safe here because both ends are our own processes and the socket is
only ever inherited by the worker it was made for; it lets frozen config dataclasses cross
without a second serialisation format.

Both ends run a gevent hub, so the socket is a gevent socket and `recv` yields.
"""
from __future__ import annotations

import array
import os
import pickle
import socket as stdsocket
from dataclasses import dataclass, field
from typing import Any, Sequence

from gevent import socket as gsocket

# Largest message we accept; configs and mount snapshots are far below this.
MAX_MESSAGE = 1 << 20
# At most this many fds in one message (one ring per mount_up).
MAX_FDS = 16


@dataclass(slots=True)
class Message:
    op: str
    fields: dict[str, Any]
    fds: list[int] = field(default_factory=list)

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)


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

    def send(self, op: str, fds: Sequence[int] = (), **fields: Any) -> None:
        """Send one message; raises OSError if the peer is gone."""
        payload = pickle.dumps({"op": op, **fields}, protocol=pickle.HIGHEST_PROTOCOL)
        ancillary = []
        if fds:
            ancillary = [(stdsocket.SOL_SOCKET, stdsocket.SCM_RIGHTS, array.array("i", fds))]
        self.sock.sendmsg([payload], ancillary)

    def recv(self) -> Message | None:
        """Next message, or None when the peer closed its end."""
        fd_size = stdsocket.CMSG_SPACE(MAX_FDS * array.array("i").itemsize)
        data, ancdata, _flags, _addr = self.sock.recvmsg(MAX_MESSAGE, fd_size)
        fds = _collect_fds(ancdata)
        if not data:
            for fd in fds:
                os.close(fd)
            return None
        body = pickle.loads(data)
        op = body.pop("op")
        return Message(op, body, fds)

    def close(self) -> None:
        self.sock.close()


def _collect_fds(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    fds: list[int] = []
    for level, kind, data in ancdata:
        if level == stdsocket.SOL_SOCKET and kind == stdsocket.SCM_RIGHTS:
            arr = array.array("i")
            arr.frombytes(data[: len(data) - (len(data) % arr.itemsize)])
            fds.extend(arr)
    return fds
