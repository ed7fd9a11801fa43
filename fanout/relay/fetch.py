"""Client IO to an upstream (gevent): connect with a timeout, read a response head, read a
bounded body. Parsing stays in `fanout.protocol.upstream`; this module only moves bytes.
"""
from __future__ import annotations

import errno

import gevent
from gevent import socket

from fanout.protocol.errors import ProtocolError
from fanout.protocol.upstream import ResponseHead, head_end, parse_response_head

# Seconds to establish a TCP connection to an upstream (2.4.4: 10; KH: 4–5).
CONNECT_TIMEOUT = 5.0
# Seconds any single read from an upstream may take before the fetch gives up
# (2.4.4 has none for its poll: a silent master hangs it; §1.2 quirk).
READ_TIMEOUT = 5.0
# Seconds a whole `fetch` may take: a master trickling bytes cannot hold a poll forever.
FETCH_DEADLINE = 15.0
# Largest stream-list body read (bytes): far above any real list, bounds a hostile master.
MAX_BODY = 1024 * 1024
# Bytes per recv.
READ_SIZE = 16384


class FetchError(Exception):
    """The upstream could not be reached, or did not answer usably; the message says why."""


def connect(host: str, port: int) -> socket.socket:
    """A connected socket with READ_TIMEOUT set; raises FetchError."""
    try:
        sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
    except OSError as exc:
        raise FetchError(f"cannot connect to {host}:{port}: {_why(exc)}") from None
    sock.settimeout(READ_TIMEOUT)
    return sock


def request_head(sock: socket.socket, request: bytes) -> tuple[ResponseHead, bytes]:
    """Send `request`, read the response head; (head, body bytes already read)."""
    try:
        sock.sendall(request)
        buffer = b""
        while (ends := head_end(buffer)) is None:
            data = sock.recv(READ_SIZE)
            if not data:
                raise FetchError("connection closed before the response head ended")
            buffer += data
        return parse_response_head(buffer[:ends[0]]), buffer[ends[1]:]
    except ProtocolError as exc:
        raise FetchError(exc.message) from None
    except OSError as exc:
        raise FetchError(_why(exc)) from None


def read_body(sock: socket.socket, first: bytes, limit: int = MAX_BODY) -> bytes:
    """Read until the upstream closes; raises FetchError past `limit` bytes or on timeout."""
    chunks, size = [first], len(first)
    try:
        while data := sock.recv(READ_SIZE):
            size += len(data)
            if size > limit:
                raise FetchError(f"body longer than {limit} bytes")
            chunks.append(data)
    except OSError as exc:
        raise FetchError(_why(exc)) from None
    return b"".join(chunks)


def fetch(host: str, port: int, request: bytes) -> tuple[ResponseHead, bytes]:
    """One request on a fresh connection: (head, whole body); raises FetchError."""
    with gevent.Timeout(FETCH_DEADLINE, FetchError(f"no complete answer in {FETCH_DEADLINE}s")):
        sock = connect(host, port)
        try:
            head, first = request_head(sock, request)
            return head, read_body(sock, first)
        finally:
            sock.close()


def _why(exc: OSError) -> str:
    if isinstance(exc, socket.timeout):
        return "timed out"
    name = errno.errorcode.get(exc.errno or 0, "")
    return f"{name} {exc.strerror or exc}".strip()
