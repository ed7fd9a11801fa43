"""Admin requests (§6): stats, mount and client lists, kills, moves, metadata.

Authentication follows Icecast 2.4.4's matrix: a request naming a mount may use the admin
credentials or that mount's source credentials; source credentials may only update the
metadata from the address the source is connected from (the same-IP rule, §6.3).
Commands about listeners or sources that may sit on any worker are gathers answered by
`admin_queries`; the XML is rendered by `fanout.protocol.stats_xml`.

Metadata (§5.3, §6.3) goes into the stream as the bytes received (converted only when a
`charset=` Icecast would know is given; any other `charset` leaves them as they are), up to
the `MAX_META_TEXT` an ICY block holds; a longer update changes nothing, as in Icecast.
Stats and logs show the title with `text.decode_title`.
"""
from __future__ import annotations

import logging
import time
from typing import Callable
from urllib.parse import parse_qsl, urlsplit

from fanout.messages import Metadata
from fanout.protocol.auth import basic_credentials, credentials_match
from fanout.protocol.errors import ProtocolError
from fanout.protocol.http import Request
from fanout.protocol.icy import MAX_META_TEXT, encode_block, shown_title, stream_title_text
from fanout.protocol.listener_auth import render_manageauth
from fanout.protocol.responses import render_text
from fanout.protocol.stats import global_stats
from fanout.protocol.stats_xml import (
    ListedMount, render_iceresponse, render_listclients, render_listmounts, render_stats,
)
from fanout.protocol.text import decode_title, from_wire, recode, to_wire
from fanout.worker import stats, streamlist
from fanout.worker.admin_queries import kill_client, kill_source, list_clients, move_clients
from fanout.worker.client import Connection
from fanout.worker.credentials import is_admin
from fanout.worker.state import LocalMount, Worker

log = logging.getLogger("fanout.admin")

XML_TYPE = "text/xml; charset=utf-8"


def serve_admin(worker: Worker, conn: Connection, request: Request, leftover: bytes) -> None:
    command = request.path[len("/admin/"):] if request.path.startswith("/admin/") else ""
    handler = COMMANDS.get(command)
    if handler is None:
        authorize(worker, request, mount=None)
        raise ProtocolError("Unrecognised command", 400)
    handler(worker, conn, request)


def authorize(worker: Worker, request: Request, mount: str | None) -> bool:
    """True for admin credentials, False for the mount's source credentials; else 401."""
    if is_admin(worker, request):
        return True
    if mount is not None:
        resolved = worker.cfg.resolve_mount(mount)
        if credentials_match(basic_credentials(request), resolved.username, resolved.password):
            return False
    raise ProtocolError("You need to authenticate", 401)


def raw_query(request: Request) -> dict[str, bytes]:
    """Query values as the exact bytes the client sent, percent-encoded or raw (titles are
    not always UTF-8). Latin-1 maps each byte to one character and back."""
    query = to_wire(urlsplit(request.target).query).decode("latin-1")
    pairs = parse_qsl(query, keep_blank_values=True, encoding="latin-1")
    values: dict[str, bytes] = {}
    for key, value in pairs:
        values.setdefault(key, value.encode("latin-1"))
    return values


def command_metadata(worker: Worker, conn: Connection, request: Request) -> None:
    query = raw_query(request)
    mount_name = from_wire(query.get("mount", b"")) or None
    by_admin = authorize(worker, request, mount_name)
    if mount_name is None or "mode" not in query:
        raise ProtocolError("Missing parameter", 400)
    mount = worker.mounts.get(mount_name)
    if mount is None or mount.ended:
        raise ProtocolError("Source does not exist", 400)
    if query["mode"] != b"updinfo":
        return send_iceresponse(worker, conn, "No such action", 0)
    if not by_admin and conn.ip != mount.info.source_ip:
        log.warning("%s: metadata for %s refused: not the source's address", conn.ip, mount_name)
        return send_iceresponse(worker, conn, "Mountpoint will not accept URL updates", 1)
    fields = title_fields(query, mount.resolved.charset)
    update_title(worker, conn, mount_name, fields, mount.resolved.charset)
    send_iceresponse(worker, conn, "Metadata update successful", 1)


def update_title(worker: Worker, conn: Connection, mount_name: str,
                 fields: dict[str, bytes | None], charset: str) -> None:
    """Have the supervisor put the update's text in the mount's ICY block. A text longer
    than an ICY block holds changes nothing but a warning (2.4.4's mp3_set_title, whose
    caller answers success all the same)."""
    text = stream_title_text(**fields)
    if len(text) > MAX_META_TEXT:
        log.warning("%s: metadata on %s refused: %d bytes, an ICY block holds %d",
                    conn.ip, mount_name, len(text), MAX_META_TEXT)
        return
    title = decode_title(shown_title(fields["song"], fields["artist"], fields["title"]), charset)
    worker.link.send(Metadata(mount_name, encode_block(text), title))
    log.info("%s: metadata on %s: %s", conn.ip, mount_name, title)


def title_fields(query: dict[str, bytes], mount_charset: str) -> dict[str, bytes | None]:
    """song, artist, title and url of an update, converted from `charset=` into the
    mount's charset when given (`text.recode`: an unknown charset changes nothing)."""
    fields = {name: query.get(name) for name in ("song", "artist", "title", "url")}
    charset = query.get("charset")
    if charset:
        source = from_wire(charset)
        fields = {k: v if v is None else recode(v, source, mount_charset)
                  for k, v in fields.items()}
    return fields


def send_iceresponse(worker: Worker, conn: Connection, message: str, ok: int) -> None:
    send_xml(worker, conn, render_iceresponse(message, bool(ok)))


def send_xml(worker: Worker, conn: Connection, body: bytes) -> None:
    conn.send(render_text(200, body, XML_TYPE, server_id=worker.cfg.server_id, now=time.time()))


def text_param(request: Request, name: str) -> str | None:
    """A query parameter as text (mount names are UTF-8 like request paths), or None."""
    value = raw_query(request).get(name)
    return None if value is None else from_wire(value)


def require_mount(worker: Worker, request: Request) -> tuple[str, LocalMount]:
    """The `mount=` the request names, authorised and live; else 401 or 400."""
    name = text_param(request, "mount")
    authorize(worker, request, name)
    if not name:
        raise ProtocolError("Missing parameter", 400)
    mount = worker.mounts.get(name)
    if mount is None or mount.ended:
        raise ProtocolError("Source does not exist", 400)
    return name, mount


def command_stats(worker: Worker, conn: Connection, request: Request) -> None:
    only = text_param(request, "mount")
    authorize(worker, request, only)
    mounts = [m for m in stats.collect_mounts(worker) if only is None or m.name == only]
    body = render_stats(global_stats(stats.collect_server(worker)), stats.stats_of(worker, mounts))
    send_xml(worker, conn, body)


def command_listmounts(worker: Worker, conn: Connection, request: Request) -> None:
    authorize(worker, request, mount=None)
    send_xml(worker, conn, render_listmounts(listed_mounts(worker)))


def listed_mounts(worker: Worker, excluded: str | None = None) -> list[ListedMount]:
    """Every live mount, hidden ones included (2.4.4 lists them to admins)."""
    now = time.time()
    return [ListedMount(m.name, m.ring.listener_count(),
                        int(now - m.info.stream_start), m.info.content_type,
                        m.resolved.fallback_mount or "")
            for m in stats.live_mounts(worker) if m.name != excluded]


def command_listclients(worker: Worker, conn: Connection, request: Request) -> None:
    name, _ = require_mount(worker, request)
    clients = [c for answer in worker.gather(list_clients, mount=name) for c in answer or ()]
    send_xml(worker, conn, render_listclients(name, sorted(clients, key=lambda c: c.id)))


def command_killclient(worker: Worker, conn: Connection, request: Request) -> None:
    name, _ = require_mount(worker, request)
    client_id = text_param(request, "id") or ""
    if not client_id.isdigit():
        raise ProtocolError("Missing parameter", 400)
    killed = any(worker.gather(kill_client, mount=name, id=int(client_id)))
    if killed:
        log.info("%s: client %s on %s killed", conn.ip, client_id, name)
    send_iceresponse(worker, conn, f"Client {client_id} {'removed' if killed else 'not found'}",
                     int(killed))


def command_killsource(worker: Worker, conn: Connection, request: Request) -> None:
    name, _ = require_mount(worker, request)
    worker.gather(kill_source, mount=name)
    log.info("%s: source on %s killed", conn.ip, name)
    send_iceresponse(worker, conn, "Source Removed", 1)


def command_moveclients(worker: Worker, conn: Connection, request: Request) -> None:
    name, _ = require_mount(worker, request)
    destination = text_param(request, "destination")
    if destination is None:
        return send_xml(worker, conn, render_listmounts(listed_mounts(worker, name), name))
    target = worker.mounts.get(destination)
    if target is None:
        raise ProtocolError("No such destination", 400)
    if destination == name:
        raise ProtocolError("supplied mountpoints are identical", 400)
    if target.ended:
        raise ProtocolError("Destination not running", 400)
    moved = sum(answer or 0 for answer in worker.gather(move_clients, mount=name,
                                                         destination=destination))
    log.info("%s: %d clients moved from %s to %s", conn.ip, moved, name, destination)
    send_iceresponse(worker, conn, f"Clients moved from {name} to {destination}", 1)


def command_manageauth(worker: Worker, conn: Connection, request: Request) -> None:
    """List, add or delete the users of a mount's listener authentication (htpasswd).

    Unlike 2.4.4, which wants the mount's source connected, any mount whose
    <authentication> applies can be managed: users are set up before a show starts."""
    name = text_param(request, "mount")
    authorize(worker, request, name)
    auth = worker.cfg.resolve_mount(name).authentication if name else None
    if name is None or auth is None:
        raise ProtocolError("missing parameter", 400)  # 2.4.4's words, also for an open mount
    action = text_param(request, "action") or "list"
    user = text_param(request, "username")
    message = worker.htpasswd.manage(auth, action, user, text_param(request, "password"))
    if message is not None:
        log.info("%s: manageauth %s %r on %s: %s", conn.ip, action, user, name, message)
    send_xml(worker, conn, render_manageauth(name, worker.htpasswd.user_names(auth), message))


# The /admin/<command> handlers: (worker, connection, request).
COMMANDS: dict[str, Callable[[Worker, Connection, Request], None]] = {
    "metadata": command_metadata,
    "metadata.xsl": command_metadata,
    "streamlist.txt": streamlist.command_streamlist_txt,
    "streams": streamlist.command_streams,
    "stats": command_stats,
    "stats.xml": command_stats,
    "listmounts": command_listmounts,
    "streamlist": command_listmounts,
    "listclients": command_listclients,
    "killclient": command_killclient,
    "killsource": command_killsource,
    "moveclients": command_moveclients,
    "manageauth": command_manageauth,
}
