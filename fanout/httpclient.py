"""The one outgoing HTTP client (gevent): connect with a timeout, send a request, read a
bounded response head within a deadline, read a bounded body.

Used for a slave's stream-list poll (`fetch`), a relay pull (`connect` + `request_head`)
and a listener-authentication POST (`exchange`). Over TLS when asked (`tls`), with the
certificate checks `UPSTREAM_TLS` holds (issue 12). Parsing stays in
`fanout.protocol.upstream` (one rule for where a response head ends, `head_end`); this
module only moves bytes, and every failure is a `FetchError` whose message says why.
"""
from __future__ import annotations

import errno
import logging
import ssl

import gevent
from gevent import socket

from fanout import tls as tls_
from fanout.config import Paths
from fanout.protocol.errors import ProtocolError
from fanout.protocol.upstream import ResponseHead, head_end, parse_response_head

log = logging.getLogger("fanout.http")

# Seconds to establish a TCP connection to an upstream (2.4.4: 10; KH: 4–5).
CONNECT_TIMEOUT = 5.0
# Seconds any single read from an upstream may take before the fetch gives up
# (2.4.4 has none for its poll: a silent master hangs it; §1.2 quirk).
READ_TIMEOUT = 5.0
# Seconds a relay's whole response head may take: real servers send it at once, so an
# upstream trickling a byte every few seconds (slow loris) cannot hold a pull forever.
HEAD_DEADLINE = 10.0
# Seconds a whole stream-list fetch may take, head included: a master trickling bytes
# cannot hold a poll (the largest list, MAX_BODY, still arrives at 420 KB/s).
FETCH_DEADLINE = 10.0
# Largest stream-list body read (bytes): 400 times a list of 1,400 mounts, room for the
# MAX_LINES lines the parser reads; a longer body is a broken master and fails the poll.
MAX_BODY = 4 * 1024 * 1024
# Bytes per recv.
READ_SIZE = 16384


class FetchError(Exception):
    """The peer could not be reached, or did not answer usably; the message says why."""


class UpstreamTls:
    """How this process checks the certificates of the https peers it connects to:
    `<paths><ssl-upstream-verify>` and `<ssl-upstream-cafile>` (issue 12). One per
    process (`UPSTREAM_TLS`), set from each config (`configure`) by the supervisor and by
    every worker, so a connection gets it wherever it is made."""

    def __init__(self) -> None:
        self._context: ssl.SSLContext | None = None  # made when first needed (reading
        # the system's CAs costs a start-up that makes no https connection)
        self.settings: tuple[bool, str | None] = (True, None)

    @property
    def context(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = tls_.client_context(*self.settings)
        return self._context

    def configure(self, paths: Paths) -> None:
        """Use `paths`' settings from now on; raises TlsError (keeping the current ones)
        for an unreadable CA file."""
        settings = (paths.ssl_upstream_verify, paths.ssl_upstream_cafile)
        if settings != self.settings:
            if settings[0] and settings[1] is not None:
                self._context = tls_.client_context(*settings)  # checked now: it may fail
            else:
                self._context = None
            self.settings = settings


UPSTREAM_TLS = UpstreamTls()


def configure_upstream_tls(paths: Paths) -> None:
    """This process checks https peers as `paths` says from now on; settings that do not
    load keep the current ones (the supervisor refuses them first, with one log line:
    `startup.check_tls`, so this says it only at debug level)."""
    try:
        UPSTREAM_TLS.configure(paths)
    except tls_.TlsError as exc:
        log.debug("upstream TLS settings not (re)loaded: %s", exc)


def connect(host: str, port: int, *, tls: bool = False,
            timeout: float | None = CONNECT_TIMEOUT,
            read_timeout: float | None = READ_TIMEOUT) -> socket.socket:
    """A connected socket (TLS-wrapped if `tls`) with `read_timeout` set (None: the
    caller bounds the time); raises FetchError."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise FetchError(f"cannot connect to {host}:{port}: {_why(exc)}") from None
    except UnicodeError:  # a name the resolver's idna codec refuses ("a..b", 64-char labels)
        raise FetchError(f"cannot connect to {host}:{port}: not a valid host name") from None
    if tls:
        try:
            sock = tls_.wrap_upstream(sock, host, port, UPSTREAM_TLS.context,
                                      timeout if timeout is not None else tls_.HANDSHAKE_TIMEOUT)
        except tls_.TlsError as exc:  # "TLS certificate of host:port refused: …"
            sock.close()
            raise FetchError(str(exc)) from None
    sock.settimeout(read_timeout)
    return sock


def request_head(sock: socket.socket, request: bytes,
                 deadline: float | None = HEAD_DEADLINE) -> tuple[ResponseHead, bytes]:
    """Send `request`, read the response head within `deadline` seconds (None: the
    caller bounds the time); (head, body bytes already read). Raises FetchError."""
    expired = None if deadline is None else FetchError(f"no response head in {deadline:g}s")
    try:
        with gevent.Timeout(deadline, expired):
            sock.sendall(request)
            buffer, ends = receive_head(sock, lenient=False)
        assert ends is not None  # not lenient: a head that did not end raised
        return parse_response_head(buffer[:ends[0]]), buffer[ends[1]:]
    except ProtocolError as exc:
        raise FetchError(exc.message) from None
    except OSError as exc:
        raise FetchError(_why(exc)) from None


def receive_head(sock: socket.socket, lenient: bool) -> tuple[bytes, tuple[int, int] | None]:
    """Read until a response head ended: (what was read, `head_end` of it). Raises
    ProtocolError past MAX_HEAD and FetchError if the peer closes first, unless
    `lenient`: then what came so far is returned, with None."""
    buffer = b""
    while True:
        try:
            ends = head_end(buffer)
        except ProtocolError:
            if lenient:
                return buffer, None
            raise
        if ends is not None:
            return buffer, ends
        data = sock.recv(READ_SIZE)
        if not data:
            if lenient:
                return buffer, None
            raise FetchError("connection closed before the response head ended")
        buffer += data


def exchange(host: str, port: int, request: bytes, *, tls: bool) -> bytes:
    """Send `request` on a fresh connection; the response head, blank line included. A
    head cut short (the peer closed, or it outgrew MAX_HEAD) is returned as it came:
    its lines still count, as they would in libcurl's header callback (listener
    authentication reads them so, `protocol.listener_auth.read_verdict`). No deadline of
    its own: the caller bounds the time. Raises FetchError."""
    sock = connect(host, port, tls=tls, timeout=None, read_timeout=None)
    try:
        sock.sendall(request)
        buffer, ends = receive_head(sock, lenient=True)
    except OSError as exc:
        raise FetchError(_why(exc)) from None
    finally:
        sock.close()
    return buffer if ends is None else buffer[:ends[1]]


def read_body(sock: socket.socket, first: bytes, length: int | None = None,
              limit: int = MAX_BODY) -> bytes:
    """The body: `length` bytes if the head declared them, else everything until the
    upstream closes. Raises FetchError past `limit` bytes, on a timeout, or when the
    upstream closes before `length` bytes."""
    if length is not None and length > limit:
        raise FetchError(f"body of {length} bytes announced, more than {limit}")
    wanted = limit + 1 if length is None else length
    chunks, size = [first[:wanted]], min(len(first), wanted)
    try:
        while size < wanted and (data := sock.recv(min(READ_SIZE, wanted - size))):
            chunks.append(data)
            size += len(data)
    except OSError as exc:
        raise FetchError(_why(exc)) from None
    if size > limit:
        raise FetchError(f"body longer than {limit} bytes")
    if length is not None and size < length:
        raise FetchError(f"body ended after {size} of its {length} bytes")
    return b"".join(chunks)


def fetch(host: str, port: int, request: bytes, tls: bool = False) -> tuple[ResponseHead, bytes]:
    """One request on a fresh connection (https if `tls`), within FETCH_DEADLINE: (head,
    whole body); raises FetchError."""
    with gevent.Timeout(FETCH_DEADLINE, FetchError(f"no complete answer in {FETCH_DEADLINE:g}s")):
        sock = connect(host, port, tls=tls)
        try:
            head, first = request_head(sock, request, deadline=None)
            try:
                length = head.content_length()
            except ProtocolError as exc:
                raise FetchError(exc.message) from None
            return head, read_body(sock, first, length)
        finally:
            sock.close()


def _why(exc: OSError) -> str:
    if isinstance(exc, socket.timeout):
        return "timed out"
    name = errno.errorcode.get(exc.errno or 0, "")
    return f"{name} {exc.strerror or exc}".strip()
