"""The edge of a connection: what comes before its request is served (issue 12 §4, §5).

Theory of operation. `open_edge` runs first on every accepted connection, in this order:

1. On a `<listen-socket><proxy-protocol>1` port, the balancer's PROXY v1/v2 header
   (`fanout.protocol.proxy`). It is peeked and only its own bytes are consumed, so a TLS
   ClientHello behind it stays in the kernel for the handshake. Its source address
   becomes the connection's address (`conn.ip`). A connection without a valid header,
   or with one from a peer that `<paths><x-forwarded-for>` does not trust (when that list
   is set: `forwarded.proxy_header_allowed`), is closed without an answer, one log line.
2. On an `<ssl>1` port, the TLS handshake (within `<header-timeout>`), with the
   certificate `certificates.Certificates` holds; `conn.sock` is the TLS socket from then on and
   `conn.scheme` "https". A failed handshake closes the connection, one log line.
3. The address is counted against `<limits><connections-per-ip>` across every worker
   (`Counters.ip_connections`); over it, the connection is answered 403 (like Icecast's
   other limits: a player treats it as "full", not "try again") and logged in one line
   (the log bounds lines per cause).

0. (issue 11) The `<paths><deny-ip>`/`<allow-ip>` files (`fanout.address_files`): a
   refused address is dropped, closed without a byte of answer and without an access.log
   line, and logged at debug level as 2.4.4 does ("<address> is banned" / "is not
   allowed"). Icecast checks the socket's peer before reading anything; so do we, except
   that the address checked is the client's as far as we can know it: on a
   `<proxy-protocol>` port the PROXY header's (checked right after the header), and from
   a trusted proxy (`<x-forwarded-for>`) the X-Forwarded-For client's (checked once the
   head is read, in `forwarded`; a request without one is checked under the proxy's own
   address). An operator lists clients, not their balancer.

After the request head is read, `forwarded` applies `X-Forwarded-For`/`-Proto` from
trusted proxies only (`fanout.protocol.forwarded`): the connection is then counted under
the client's address instead of the proxy's. Headers from anyone else are ignored; one
log line says so when trusted proxies are configured (with none configured, Icecast's
behaviour: never read).
"""
from __future__ import annotations

import logging
import socket
import time

import gevent

from fanout.address_files import AddressFilter
from fanout.config import Config
from fanout.counters import Counters
from fanout.protocol.errors import CLOSE_SILENTLY, ProtocolError
from fanout.protocol.forwarded import FORWARDED_FOR, client_address, proxy_header_allowed
from fanout.protocol.http import Request
from fanout.protocol.proxy import MAX_V2_PAYLOAD, V2_FIXED, ProxyHeader, ProxyHeaderParser
from fanout.tls import TlsError
from fanout.worker.certificates import Certificates
from fanout.worker.client import Connection, HeaderTimeout

log = logging.getLogger("fanout.client")

# Bytes peeked at once for a PROXY header: the longest one the parser takes.
PROXY_PEEK = V2_FIXED + MAX_V2_PAYLOAD
TOO_MANY = "too many connections from this address"
# A refused connection's request may still be arriving: closing with unread bytes sends
# RST, and the client may lose our 403. So after the answer the connection is half-closed
# and read (and dropped) for at most LINGER_TIME s and LINGER_BYTES bytes, then closed.
LINGER_TIME = 1.0
LINGER_BYTES = 16 * 1024


class AddressOverLimit(ProtocolError):
    """The connection's address holds <connections-per-ip> connections already."""


class AddressRefused(Exception):
    """The connection's address is denied (or not allowed) by the address files: drop it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # address_list.BANNED or NOT_ALLOWED


def check_address(conn: Connection, addresses: AddressFilter) -> None:
    """Raise AddressRefused when the address files refuse `conn.ip` (step 0)."""
    reason = addresses.refusal(conn.ip, time.monotonic())
    if reason is not None:
        raise AddressRefused(reason)


def open_edge(conn: Connection, certificates: Certificates, addresses: AddressFilter,
              counters: Counters, row: int, config: Config) -> None:
    """Steps 0-3 of the module doc; raises AddressRefused (dropped), ProtocolError
    (refused), HeaderTimeout, OSError."""
    spec, timeout = conn.server.spec, config.limits.header_timeout
    if spec.proxy_protocol:
        if not proxy_header_allowed(conn.ip, certificates.trusted):
            raise ProtocolError("PROXY header port reached from an untrusted address "
                                "(not in <x-forwarded-for>)", CLOSE_SILENTLY)
        header = read_proxy_header(conn.sock, timeout)
        conn.ip, conn.port = header.client((conn.ip, conn.port))
        check_address(conn, addresses)
    elif not certificates.trusted.trusts(conn.ip):  # a trusted proxy: see `forwarded`
        check_address(conn, addresses)
    if spec.ssl:
        if certificates.server is None:
            raise ProtocolError("TLS port without a usable certificate", CLOSE_SILENTLY)
        try:
            conn.sock = certificates.server.accept(conn.sock, timeout)
        except TlsError as exc:
            raise ProtocolError(str(exc), CLOSE_SILENTLY) from None
        conn.scheme = "https"
    count_address(conn, counters, row, config.limits.connections_per_ip)


def read_proxy_header(sock: socket.socket, timeout: float) -> ProxyHeader:
    """The PROXY header at the start of `sock`, consuming nothing after it (see the module
    doc). Raises ProtocolError, HeaderTimeout, ConnectionError."""
    parser = ProxyHeaderParser()
    with gevent.Timeout(timeout, HeaderTimeout):
        while True:
            data = sock.recv(PROXY_PEEK, socket.MSG_PEEK)
            if not data:
                raise ConnectionResetError("closed before its PROXY header ended")
            header = parser.feed(data)
            # Until the header is whole, every byte peeked is part of it.
            consume(sock, len(data) - (len(parser.leftover) if header is not None else 0))
            if header is not None:
                return header


def consume(sock: socket.socket, count: int) -> None:
    """Read and drop `count` bytes already peeked (they are in the kernel's buffer)."""
    while count > 0:
        data = sock.recv(count)
        if not data:
            raise ConnectionResetError("closed inside its PROXY header")
        count -= len(data)


def count_address(conn: Connection, counters: Counters, row: int, limit: int) -> None:
    """Count `conn` against its address; raises ProtocolError(403) past `limit`."""
    if conn.uncount is not None:
        conn.uncount()
        conn.uncount = None
    ip = conn.ip
    if counters.ip_connections(ip) >= limit:
        raise AddressOverLimit(f"{TOO_MANY} ({limit}, <connections-per-ip>)", 403)
    counters.add_ip(row, ip, 1)
    conn.uncount = lambda: counters.add_ip(row, ip, -1)


def forwarded(conn: Connection, request: Request, certificates: Certificates,
              addresses: AddressFilter, counters: Counters, row: int, config: Config) -> None:
    """Apply trusted proxies' X-Forwarded-For/-Proto to `conn` (see the module doc);
    raises ProtocolError(403) when the client's address is over its limit, AddressRefused
    when the address files refuse it."""
    trusted = certificates.trusted
    if not trusted:
        return
    # The edge left the address files to us when the peer is a trusted proxy (step 0).
    deferred = not conn.server.spec.proxy_protocol and trusted.trusts(conn.ip)
    _apply_forwarded(conn, request, certificates, counters, row, config)
    if deferred:
        check_address(conn, addresses)


def _apply_forwarded(conn: Connection, request: Request, certificates: Certificates,
                     counters: Counters, row: int, config: Config) -> None:
    trusted = certificates.trusted
    headers = request.headers
    real = client_address(conn.ip, headers, trusted, conn.scheme)
    if not real.forwarded:
        if any(name == FORWARDED_FOR for name, _ in headers) and not trusted.trusts(conn.ip):
            log.info("%s: X-Forwarded-For from an address not in <x-forwarded-for>; ignored",
                     conn.ip)
        return
    conn.scheme = real.scheme
    if real.ip != conn.ip:
        conn.ip = real.ip
        count_address(conn, counters, row, config.limits.connections_per_ip)


def linger(conn: Connection) -> None:
    """Half-close a refused plain connection and read what the client still sends (see
    LINGER_TIME), so that it reads our answer before the connection closes."""
    if conn.encrypted:
        return  # closing says close_notify and reads the client's (tls.close_tls)
    try:
        conn.sock.shutdown(socket.SHUT_WR)
        left = LINGER_BYTES
        with gevent.Timeout(LINGER_TIME, False):
            while left > 0 and (data := conn.sock.recv(min(left, 4096))):
                left -= len(data)
    except OSError:
        pass
