"""Admin requests (§6): stats, mount and client lists, kills, moves, metadata.

Authentication follows Icecast 2.4.4's matrix: a request naming a mount may use the admin
credentials or that mount's source credentials; source credentials may only update the
metadata from the address the source is connected from (the same-IP rule, §6.3).
Commands about listeners or sources that may sit on any worker are gathers answered by
`admin_queries`; the XML is rendered by `fanout.protocol.stats_xml`. A command reads its
parameters from an `AdminCall` (the query, over a form POSTed by the admin UI); one that
acts returns an `Outcome`, answered here as `<iceresponse>` XML and by `webadmin.py` as a
result page (the `.xsl` names).

Metadata (§5.3, §6.3) goes into the stream as the bytes received (converted only when a
`charset=` Icecast would know is given; any other `charset` leaves them as they are), up to
the `MAX_META_TEXT` an ICY block holds; a longer update changes nothing, as in Icecast.
Stats and logs show the title with `text.decode_title`.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Mapping
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
    ListedClient, ListedMount, render_iceresponse, render_listclients, render_listmounts,
    render_stats,
)
from fanout.protocol.text import decode_title, from_wire, recode, to_wire
from fanout.worker import stats, streamlist
from fanout.worker.admin_queries import kill_client, kill_source, list_clients, move_clients
from fanout.worker.client import Connection
from fanout.worker.credentials import is_admin
from fanout.worker.state import LocalMount, Worker

log = logging.getLogger("fanout.admin")

XML_TYPE = "text/xml; charset=utf-8"


@dataclass(frozen=True, slots=True)
class AdminCall:
    """One admin request: its head, and its parameters as the exact bytes sent (the query
    over a POSTed form, `webadmin.py`)."""

    request: Request
    params: Mapping[str, bytes]

    def text(self, name: str) -> str | None:
        """A parameter as text (mount names are UTF-8 like request paths), or None."""
        value = self.params.get(name)
        return None if value is None else from_wire(value)


# A command's handler: (worker, connection, the call).
Command = Callable[[Worker, Connection, AdminCall], None]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a command that acts did: Icecast's `<iceresponse>` message and return."""

    message: str
    ok: bool


def run_command(worker: Worker, conn: Connection, command: str, call: AdminCall) -> None:
    """Answer `/admin/<command>` with its XML (or text); 400 for a command we lack."""
    handler = COMMANDS.get(command)
    if handler is None:
        authorize(worker, call.request, mount=None)
        raise ProtocolError("Unrecognised command", 400)
    handler(worker, conn, call)


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


def act_metadata(worker: Worker, conn: Connection, call: AdminCall) -> Outcome:
    query = call.params
    mount_name = from_wire(query.get("mount", b"")) or None
    by_admin = authorize(worker, call.request, mount_name)
    if mount_name is None or "mode" not in query:
        raise ProtocolError("Missing parameter", 400)
    mount = worker.mounts.get(mount_name)
    if mount is None or mount.ended:
        raise ProtocolError("Source does not exist", 400)
    if query["mode"] != b"updinfo":
        return Outcome("No such action", False)
    if not by_admin and conn.ip != mount.info.source_ip:
        log.warning("%s: metadata for %s refused: not the source's address", conn.ip, mount_name)
        return Outcome("Mountpoint will not accept URL updates", True)
    fields = title_fields(query, mount.resolved.charset)
    update_title(worker, conn, mount_name, fields, mount.resolved.charset)
    return Outcome("Metadata update successful", True)


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


def title_fields(query: Mapping[str, bytes], mount_charset: str) -> dict[str, bytes | None]:
    """song, artist, title and url of an update, converted from `charset=` into the
    mount's charset when given (`text.recode`: an unknown charset changes nothing)."""
    fields = {name: query.get(name) for name in ("song", "artist", "title", "url")}
    charset = query.get("charset")
    if charset:
        source = from_wire(charset)
        fields = {k: v if v is None else recode(v, source, mount_charset)
                  for k, v in fields.items()}
    return fields


def send_iceresponse(worker: Worker, conn: Connection, outcome: Outcome) -> None:
    send_xml(worker, conn, render_iceresponse(outcome.message, outcome.ok))


def send_xml(worker: Worker, conn: Connection, body: bytes) -> None:
    conn.send(render_text(200, body, XML_TYPE, server_id=worker.cfg.server_id, now=time.time()))


def text_param(request: Request, name: str) -> str | None:
    """A query parameter as text (mount names are UTF-8 like request paths), or None."""
    value = raw_query(request).get(name)
    return None if value is None else from_wire(value)


def require_mount(worker: Worker, call: AdminCall) -> tuple[str, LocalMount]:
    """The `mount=` the request names, authorised and live; else 401 or 400."""
    name = call.text("mount")
    authorize(worker, call.request, name)
    if not name:
        raise ProtocolError("Missing parameter", 400)
    mount = worker.mounts.get(name)
    if mount is None or mount.ended:
        raise ProtocolError("Source does not exist", 400)
    return name, mount


def command_stats(worker: Worker, conn: Connection, call: AdminCall) -> None:
    only = call.text("mount")
    authorize(worker, call.request, only)
    mounts = [m for m in stats.collect_mounts(worker) if only is None or m.name == only]
    body = render_stats(global_stats(stats.collect_server(worker)), stats.stats_of(worker, mounts))
    send_xml(worker, conn, body)


def command_listmounts(worker: Worker, conn: Connection, call: AdminCall) -> None:
    authorize(worker, call.request, mount=None)
    send_xml(worker, conn, render_listmounts(listed_mounts(worker)))


def listed_mounts(worker: Worker, excluded: str | None = None) -> list[ListedMount]:
    """Every live mount, hidden ones included (2.4.4 lists them to admins)."""
    now = time.time()
    return [ListedMount(m.name, m.ring.listener_count(),
                        int(now - m.info.stream_start), m.info.content_type,
                        m.resolved.fallback_mount or "")
            for m in stats.live_mounts(worker) if m.name != excluded]


def listed_clients(worker: Worker, name: str) -> list[ListedClient]:
    """Every listener of mount `name`, on every worker, by id."""
    clients = [c for answer in worker.gather(list_clients, mount=name) for c in answer or ()]
    return sorted(clients, key=lambda c: c.id)


def command_listclients(worker: Worker, conn: Connection, call: AdminCall) -> None:
    name, _ = require_mount(worker, call)
    send_xml(worker, conn, render_listclients(name, listed_clients(worker, name)))


def act_killclient(worker: Worker, conn: Connection, call: AdminCall) -> Outcome:
    name, _ = require_mount(worker, call)
    client_id = call.text("id") or ""
    if not client_id.isdigit():
        raise ProtocolError("Missing parameter", 400)
    killed = any(worker.gather(kill_client, mount=name, id=int(client_id)))
    if killed:
        log.info("%s: client %s on %s killed", conn.ip, client_id, name)
    return Outcome(f"Client {client_id} {'removed' if killed else 'not found'}", killed)


def act_killsource(worker: Worker, conn: Connection, call: AdminCall) -> Outcome:
    name, _ = require_mount(worker, call)
    worker.gather(kill_source, mount=name)
    log.info("%s: source on %s killed", conn.ip, name)
    return Outcome("Source Removed", True)


def act_moveclients(worker: Worker, conn: Connection, call: AdminCall) -> Outcome:
    """Move every listener of `mount` to `destination` (which the caller checked is given)."""
    name, _ = require_mount(worker, call)
    destination = call.text("destination") or ""
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
    return Outcome(f"Clients moved from {name} to {destination}", True)


def command_moveclients(worker: Worker, conn: Connection, call: AdminCall) -> None:
    if call.text("destination") is None:
        name, _ = require_mount(worker, call)
        return send_xml(worker, conn, render_listmounts(listed_mounts(worker, name), name))
    send_iceresponse(worker, conn, act_moveclients(worker, conn, call))


def command_manageauth(worker: Worker, conn: Connection, call: AdminCall) -> None:
    """List, add or delete the users of a mount's listener authentication (htpasswd).

    Unlike 2.4.4, which wants the mount's source connected, any mount whose
    <authentication> applies can be managed: users are set up before a show starts."""
    name = call.text("mount")
    authorize(worker, call.request, name)
    auth = worker.cfg.resolve_mount(name).authentication if name else None
    if name is None or auth is None:
        raise ProtocolError("missing parameter", 400)  # 2.4.4's words, also for an open mount
    action = call.text("action") or "list"
    user = call.text("username")
    message = worker.htpasswd.manage(auth, action, user, call.text("password"))
    if message is not None:
        log.info("%s: manageauth %s %r on %s: %s", conn.ip, action, user, name, message)
    send_xml(worker, conn, render_manageauth(name, worker.htpasswd.user_names(auth), message))


def as_xml(act: Callable[[Worker, Connection, AdminCall], Outcome]) -> Command:
    """A command that acts, answering its outcome as Icecast's `<iceresponse>`."""
    return lambda worker, conn, call: send_iceresponse(worker, conn, act(worker, conn, call))


def streamlist_command(serve: Callable[[Worker, Connection, Request], None]) -> Command:
    """A stream-list command (`streamlist.py`), which reads the request itself."""
    return lambda worker, conn, call: serve(worker, conn, call.request)


# The commands that act, by name: what `webadmin.py` answers with a result page when asked
# as `<command>.xsl`. moveclients acts only with a destination.
ACTIONS: dict[str, Callable[[Worker, Connection, AdminCall], Outcome]] = {
    "metadata": act_metadata,
    "killclient": act_killclient,
    "killsource": act_killsource,
    "moveclients": act_moveclients,
}

# The /admin/<command> handlers answering XML or text.
COMMANDS: dict[str, Command] = {
    "metadata": as_xml(act_metadata),
    "streamlist.txt": streamlist_command(streamlist.command_streamlist_txt),
    "streams": streamlist_command(streamlist.command_streams),
    "stats": command_stats,
    "stats.xml": command_stats,
    "listmounts": command_listmounts,
    "streamlist": command_listmounts,
    "listclients": command_listclients,
    "killclient": as_xml(act_killclient),
    "killsource": as_xml(act_killsource),
    "moveclients": command_moveclients,
    "manageauth": command_manageauth,
}
