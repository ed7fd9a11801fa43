"""Shoutcast v1 (Shoutcast-DSP, "ICY") sources and their `/admin.cgi` title updates (§4.4).

Theory of operation. Every connection accepted on a listen socket with
`<shoutcast-compat>1` (or the port+1 socket a `<shoutcast-mount>` implies) is a Shoutcast
source, whatever it sends: 2.4.4 does not look for HTTP there, so a GET is simply a wrong
password. The source feeds the socket's shoutcast mount (its `<shoutcast-mount>`, else the
global one, `/stream` by default):

1. within `<header-timeout>`: the password line (`fanout.protocol.shoutcast` parses the
   handshake), compared with that mount's source password; a mismatch closes the
   connection without a word, then `OK2` is sent and the `icy-*` header block read;
2. from there on it is an ordinary source: `source.stream_source` claims the mount from
   the supervisor, reads the stream into the ring with the source timeout and releases
   the mount, exactly as for SOURCE/PUT. The only differences are that no `200 OK` is
   sent and that a refusal (mount in use, too many sources) closes the connection: the
   peer reads no HTTP.

The mount's info carries `shoutcast_compat`, which is what lets `/admin.cgi` (the
Shoutcast way of setting the title, `serve_admin_cgi`) update it: 2.4.4 refuses
admin.cgi on mounts fed any other way.
"""
from __future__ import annotations

import logging
import time

import gevent

from fanout.config import Config, ListenSocket
from fanout.messages import Metadata
from fanout.protocol.errors import CLOSE_SILENTLY, ProtocolError
from fanout.protocol.http import TEXT_ENCODING, TEXT_ERRORS, Request
from fanout.protocol.icy import encode_block, stream_title_text
from fanout.protocol.responses import render_text
from fanout.protocol.shoutcast import (
    NEED_DATA, OK2_REPLY, Event, HandshakeParser, Password, password_matches,
)
from fanout.protocol.text import decode_title
from fanout.worker import admin
from fanout.worker.client import HEAD_READ_SIZE, Connection, HeaderTimeout
from fanout.worker.source import source_info, stream_source
from fanout.worker.state import LocalMount, Worker

log = logging.getLogger("fanout.shoutcast")

HTML_TYPE = "text/html; charset=utf-8"
# 2.4.4's page for a successful admin.cgi update.
ADMIN_CGI_DONE = (b"<html><head><title>Admin request successful</title></head>"
                  b"<body><p>Metadata update successful</p></body></html>")


def shoutcast_mount(config: Config, spec: ListenSocket) -> str:
    """The mount Shoutcast sources and admin.cgi on listen socket `spec` are about."""
    return spec.shoutcast_mount or config.shoutcast_mount


# -- sources ---------------------------------------------------------------------------------

def serve_shoutcast_source(worker: Worker, conn: Connection) -> None:
    """Serve a connection on a shoutcast-compat socket as a Shoutcast source.

    Raises ProtocolError (CLOSE_SILENTLY) for a wrong password, bad or oversized input
    and a refused claim; HeaderTimeout when the handshake is not over in time.
    """
    mount = shoutcast_mount(worker.cfg, conn.server.spec)
    request, leftover = read_handshake(worker, conn, mount)
    conn.request, conn.status = request, 200  # the access log line, as 2.4.4 writes it
    info = source_info(conn, request, request.header("content-type"), shoutcast_compat=True)
    try:
        stream_source(worker, conn, mount, info, b"", leftover)
    except ProtocolError as refused:  # the claim: the peer reads no HTTP error
        raise ProtocolError(f"Shoutcast source on {mount}: {refused.message}",
                            CLOSE_SILENTLY) from None


def read_handshake(worker: Worker, conn: Connection, mount: str) -> tuple[Request, bytes]:
    """Check the password line, answer OK2, read the header block; the block as a
    Request for `mount`, and the stream bytes that came with it."""
    parser = HandshakeParser(mount)
    with gevent.Timeout(worker.cfg.limits.header_timeout, HeaderTimeout):
        password = next_event(conn, parser)
        assert isinstance(password, Password)
        if not password_matches(password, worker.cfg.resolve_mount(mount).password):
            raise ProtocolError(f"Shoutcast source on {mount}: wrong password", CLOSE_SILENTLY)
        conn.send(OK2_REPLY)
        request = next_event(conn, parser)
    assert isinstance(request, Request)
    return request, parser.leftover


def next_event(conn: Connection, parser: HandshakeParser) -> Event:
    """Read until the parser has its next event; ConnectionResetError if the peer leaves."""
    while (event := parser.next_event()) is NEED_DATA:
        data = conn.sock.recv(HEAD_READ_SIZE)
        if not data:
            raise ConnectionResetError("closed during the Shoutcast handshake")
        parser.feed(data)
    return event


# -- /admin.cgi --------------------------------------------------------------------------

def serve_admin_cgi(worker: Worker, conn: Connection, request: Request, leftover: bytes) -> None:
    """`/admin.cgi?mode=updinfo&pass=…&song=…`: set the title of this port's shoutcast
    mount. `pass` is the admin password or the mount's source password; checks and
    answers in 2.4.4's order (§6.1, §6.3)."""
    query = admin.raw_query(request)
    name, mount, by_admin = admin_cgi_mount(worker, conn, query)
    if "mode" not in query or "song" not in query:
        raise ProtocolError("Missing parameter", 400)
    if query["mode"] != b"updinfo":
        raise ProtocolError("No such action", 400)
    if not by_admin and conn.ip != mount.info.source_ip:
        raise ProtocolError("mountpoint will not accept URL updates", 400)
    publish_song(worker, conn, name, query["song"], mount.resolved.charset)
    conn.send(render_text(200, ADMIN_CGI_DONE, HTML_TYPE, server_id=worker.cfg.server_id,
                          now=time.time()))


def admin_cgi_mount(worker: Worker, conn: Connection,
                    query: dict[str, bytes]) -> tuple[str, LocalMount, bool]:
    """The shoutcast mount of the socket admin.cgi came in on, if `pass` may update it and
    a Shoutcast source feeds it; with whether `pass` was the admin's. Else 400 or 401."""
    if "pass" not in query:
        raise ProtocolError("missing pass parameter", 400)
    name = shoutcast_mount(worker.cfg, conn.server.spec)
    by_admin = authorize_icy(worker, query["pass"], name)
    mount = worker.mounts.get(name)
    if mount is None or mount.ended:
        raise ProtocolError("Source does not exist", 400)
    if not mount.info.shoutcast_compat:  # 2.4.4: only Shoutcast sources take it
        raise ProtocolError("illegal metadata call", 400)
    return name, mount, by_admin


def authorize_icy(worker: Worker, password: bytes, mount: str) -> bool:
    """True for the admin password, False for the mount's source password; else 401."""
    given = Password(password.decode(TEXT_ENCODING, TEXT_ERRORS))
    if password_matches(given, worker.cfg.authentication.admin_password):
        return True
    if password_matches(given, worker.cfg.resolve_mount(mount).password):
        return False
    raise ProtocolError("You need to authenticate", 401)


def publish_song(worker: Worker, conn: Connection, mount: str, song: bytes, charset: str) -> None:
    """Hand the new title's ICY block to the supervisor, the one writer of metadata."""
    try:
        block = encode_block(stream_title_text(song=song))
    except ValueError:
        raise ProtocolError("Metadata too long", 400) from None
    title = decode_title(song, charset)
    worker.link.send(Metadata(mount, block, title))
    log.info("%s: metadata on %s: %s", conn.ip, mount, title)
