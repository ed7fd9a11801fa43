"""Admin requests (§6). This worker answers `/admin/metadata`; other commands are 400.

Authentication follows Icecast 2.4.4's matrix: a request naming a mount may use the admin
credentials or that mount's source credentials; source credentials may only update the
metadata from the address the source is connected from (the same-IP rule, §6.3).
"""
from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fanout.protocol.auth import basic_credentials, credentials_match
from fanout.protocol.errors import ProtocolError
from fanout.protocol.http import Request
from fanout.protocol.icy import encode_block, stream_title_text
from fanout.protocol.responses import render_text
from fanout.worker.connection import Connection

log = logging.getLogger("fanout.admin")

XML_TYPE = "text/xml; charset=utf-8"


def serve_admin(worker: Any, conn: Connection, request: Request, leftover: bytes) -> None:
    command = request.path[len("/admin/"):] if request.path.startswith("/admin/") else ""
    handler = COMMANDS.get(command)
    if handler is None:
        authorize(worker, request, mount=None)
        raise ProtocolError("Unrecognised command", 400)
    handler(worker, conn, request)


def authorize(worker: Any, request: Request, mount: str | None) -> bool:
    """True for admin credentials, False for the mount's source credentials; else 401."""
    auth = worker.cfg.authentication
    given = basic_credentials(request)
    if auth.admin_user is not None and credentials_match(given, auth.admin_user, auth.admin_password):
        return True
    if mount is not None:
        resolved = worker.cfg.resolve_mount(mount)
        if credentials_match(given, resolved.username, resolved.password):
            return False
    raise ProtocolError("You need to authenticate", 401)


def raw_query(request: Request) -> dict[str, bytes]:
    """Query values as the bytes the client percent-encoded (titles are not always UTF-8)."""
    pairs = parse_qsl(urlsplit(request.target).query, keep_blank_values=True, encoding="latin-1")
    values: dict[str, bytes] = {}
    for key, value in pairs:
        values.setdefault(key, value.encode("latin-1"))
    return values


def command_metadata(worker: Any, conn: Connection, request: Request) -> None:
    query = raw_query(request)
    mount_name = query.get("mount", b"").decode("latin-1") or None
    is_admin = authorize(worker, request, mount_name)
    if mount_name is None or b"mode" not in query:
        raise ProtocolError("Missing parameter", 400)
    mount = worker.mounts.get(mount_name)
    if mount is None or mount.ended:
        raise ProtocolError("Source does not exist", 400)
    if query["mode"] != b"updinfo":
        return send_iceresponse(worker, conn, "No such action", 0)
    if not is_admin and conn.ip != mount.info.get("source_ip"):
        log.warning("%s: metadata for %s refused: not the source's address", conn.ip, mount_name)
        return send_iceresponse(worker, conn, "Mountpoint will not accept URL updates", 1)
    text = title_text(query, mount.resolved.charset)
    try:
        block = encode_block(text)
    except ValueError:
        raise ProtocolError("Metadata too long", 400) from None
    title = text[len(b"StreamTitle='"):text.index(b"';")] if text.startswith(b"StreamTitle='") else b""
    worker.channel.send("metadata", mount=mount_name, block=block,
                        title=title.decode(mount.resolved.charset, errors="replace"))
    log.info("%s: metadata on %s: %s", conn.ip, mount_name, title.decode("utf-8", errors="replace"))
    send_iceresponse(worker, conn, "Metadata update successful", 1)


def title_text(query: dict[str, bytes], mount_charset: str) -> bytes:
    """The StreamTitle text, converted from `charset=` into the mount's charset when given."""
    fields = {name: query.get(name) for name in ("song", "artist", "title", "url")}
    charset = query.get("charset")
    if charset:
        source, target = charset.decode("latin-1"), mount_charset
        fields = {k: _recode(v, source, target) for k, v in fields.items()}
    return stream_title_text(**fields)


def _recode(value: bytes | None, source: str, target: str) -> bytes | None:
    if value is None:
        return None
    try:
        return value.decode(source).encode(target, errors="replace")
    except (LookupError, UnicodeDecodeError):
        return value  # unknown charset: keep the bytes as Icecast does on a failed conversion


def send_iceresponse(worker: Any, conn: Connection, message: str, ok: int) -> None:
    body = (f'<?xml version="1.0"?>\n<iceresponse><message>{message}</message>'
            f"<return>{ok}</return></iceresponse>\n").encode()
    conn.send(render_text(200, body, XML_TYPE, server_id=worker.cfg.server_id, now=time.time()))


COMMANDS = {
    "metadata": command_metadata,
    "metadata.xsl": command_metadata,
}
