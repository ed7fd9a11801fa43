"""A client connection as every handler sees it: its socket, what we know of it, its log line.

Reading a request head (`read_request`) and writing the access.log line of a finished
request (`log_access`) live here too, beside the connection they are about. What to do
with a request is `connection.py`'s business (routing, and the one place errors become
answers); who accepts connections is `server.py`'s.
"""
from __future__ import annotations

import re
import time
from typing import Callable, Protocol

import gevent
from gevent.socket import socket as GeventSocket

from fanout import logs, tls
from fanout.config import ListenSocket
from fanout.protocol.access_log import AccessRecord, format_access_line
from fanout.protocol.http import HeadParser, Request
from fanout.worker.certificates import Certificates

# Bytes read per recv while a head arrives (a request head, a Shoutcast handshake).
HEAD_READ_SIZE = 4096
# Bytes of a first send searched for status lines (a source's 100 Continue precedes its 200).
STATUS_SCAN = 512
_STATUS = re.compile(rb"HTTP/\d\.\d (\d{3}) ")


class HeaderTimeout(Exception):
    """The head did not arrive within <header-timeout>."""


class Acceptor(Protocol):
    """The server a connection came in on (`server.ClientServer`)."""

    spec: ListenSocket  # the <listen-socket> it was bound for (shoutcast-compat …)
    certificates: Certificates  # issue 12: its TLS certificate and trusted proxies (edge.py)

    def keep(self, sock: GeventSocket) -> None:
        """Leave `sock` open when the connection's handler returns (the pump owns it)."""


class Connection:
    """A client socket with what we know of it, for handlers and log lines."""

    __slots__ = ("sock", "ip", "port", "server", "id", "answered", "kept", "request", "status",
                 "sent", "started", "scheme", "bridge", "uncount")

    def __init__(self, sock: GeventSocket, address: tuple[str, int], server: Acceptor,
                 client_id: int) -> None:
        self.sock = sock
        self.ip, self.port = address[0], address[1]
        self.server = server
        self.id = client_id
        self.answered = False
        self.kept = False
        self.request: Request | None = None  # once the head is parsed
        self.status = 0  # of the response sent, for the access log
        self.sent = 0  # bytes sent through send()
        self.started = time.time()
        # issue 12 (edge.py): "https" once a TLS handshake (or a trusted proxy) says so; the
        # bridge the sender writes a TLS listener through (None: plain, or kernel TLS);
        # what stops counting this connection against its address.
        self.scheme = "http"
        self.bridge: tls.Bridge | None = None
        self.uncount: Callable[[], None] | None = None

    def send(self, data: bytes) -> None:
        if self.status in (0, 100):
            statuses = _STATUS.findall(data[:STATUS_SCAN])
            self.status = int(statuses[-1]) if statuses else self.status
        self.answered = True
        self.sock.sendall(data)
        self.sent += len(data)

    @property
    def encrypted(self) -> bool:
        """Whether the socket speaks TLS (its fd carries records, not plain bytes)."""
        return tls.is_tls(self.sock)

    def sender_fd(self) -> int:
        """The fd the compiled sender writes this listener's bytes to (`tls.sender_fd`)."""
        if not tls.is_tls(self.sock):
            plain: int = self.sock.fileno()
            return plain
        fd, self.bridge = tls.sender_fd(self.sock)
        return fd

    def close(self) -> None:
        """Close the connection (a TLS one says close_notify, without holding the caller)
        and stop counting it against its address. Idempotent."""
        if self.uncount is not None:
            self.uncount()
            self.uncount = None
        sock = self.sock
        if self.bridge is not None:
            self.bridge.close()  # its greenlet sends what is queued, then closes `sock`
        elif tls.is_tls(sock) and sock.fileno() >= 0:
            gevent.spawn(tls.close_tls, sock)
        else:
            sock.close()

    def keep_open(self) -> None:
        """The socket now belongs to the pump; don't close it when the handler returns."""
        self.kept = True
        self.server.keep(self.sock)


def read_request(sock: GeventSocket, timeout: float) -> tuple[Request, bytes]:
    """Read one request head; (the request, the bytes that came after its head). Raises
    HeaderTimeout, ProtocolError or ConnectionError.

    The timeout is a timer of the hub, and the hub may not have run for a while (busy, or
    the process was stopped): the timer can fire before the hub saw the bytes that arrived
    meanwhile. So the head is late only if it is not whole with what the socket holds now
    either (as a source is idle only if its socket has nothing to read, source.py)."""
    parser = HeadParser()
    try:
        with gevent.Timeout(timeout, HeaderTimeout):
            while True:
                request = parser.feed(_head_bytes(sock.recv(HEAD_READ_SIZE)))
                if request is not None:
                    return request, parser.leftover
    except HeaderTimeout:
        return _head_waiting(sock, parser)


def _head_waiting(sock: GeventSocket, parser: HeadParser) -> tuple[Request, bytes]:
    """The head from what `sock` holds now (not waiting for more); HeaderTimeout if that
    does not complete it."""
    timeout = sock.gettimeout()
    sock.settimeout(0.0)  # a gevent socket waits on EAGAIN unless its timeout is 0
    try:
        while True:
            try:
                data = sock.recv(HEAD_READ_SIZE)
            except BlockingIOError:
                raise HeaderTimeout() from None
            request = parser.feed(_head_bytes(data))
            if request is not None:
                return request, parser.leftover
    finally:
        sock.settimeout(timeout)


def _head_bytes(data: bytes) -> bytes:
    if not data:
        raise ConnectionResetError("closed before the request head ended")
    return data


def log_access(conn: Connection, status: int, sent: int) -> None:
    """One access.log line for a finished connection whose request head was read."""
    request = conn.request
    if request is None:
        return  # Icecast logs requests, not bare connections
    logs.access(format_access_line(AccessRecord(
        conn.ip, conn.started, request.method, request.target, request.version, status, sent,
        request.header("referer") or "", request.header("user-agent") or "",
        time.time() - conn.started)))
