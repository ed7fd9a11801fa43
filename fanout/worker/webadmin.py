"""Every /admin/* request comes in here: the admin UI's HTML pages and forms, then the
admin commands' XML (`admin.py`).

Order, for `/admin/<command>`: a POST's form is read (urlencoded, at most
`admin_ui.MAX_FORM_BYTES`: a longer one is refused 413 unread), its fields under the
query's; a cross-site request that would change something is refused 403
(`admin_ui.check_same_origin`) before any handler runs; then `admin_ui.admin_page` says
which page answers — the overview (`/admin/`, `stats.xsl`, `listmounts.xsl`), a mount's
page (`listclients.xsl`, `updatemetadata.xsl`, `moveclients.xsl` without a destination)
or the result page of a command that acts (its `.xsl` name) — and anything else is the
command's XML. A page asks for the credentials its command would: the overview the
admin's, a mount's page and a result the admin's or the mount's source credentials.
Every page is sent with `admin_ui.ADMIN_HEADERS`.
"""
from __future__ import annotations

import time
from typing import Callable

import gevent

from fanout import __version__
from fanout.protocol.admin_ui import (
    ADMIN_HEADERS, FORM_TYPE, HTML_TYPE, MAX_FORM_BYTES, MOUNT_PAGE, OVERVIEW, RESULT,
    admin_page, check_same_origin, mount_page_url, parse_form, render_admin_mount,
    render_admin_overview, render_admin_result, slave_rows,
)
from fanout.protocol.errors import ProtocolError
from fanout.protocol.http import Request
from fanout.protocol.responses import render_text
from fanout.protocol.stats import global_stats
from fanout.worker import admin, stats
from fanout.worker.admin import AdminCall, authorize, raw_query, require_mount
from fanout.worker.client import Connection
from fanout.worker.state import Worker

# Bytes read per recv of a form body.
FORM_READ_SIZE = 4096


def serve_admin_request(worker: Worker, conn: Connection, request: Request,
                        leftover: bytes) -> None:
    command = request.path.removeprefix("/admin/")
    params = {**parse_form(read_form(worker, conn, request, leftover)), **raw_query(request)}
    check_same_origin(request, command, params)
    call = AdminCall(request, params)
    page = admin_page(command, params)
    if page is None:
        admin.run_command(worker, conn, command, call)
    else:
        PAGES[page](worker, conn, command, call)


def read_form(worker: Worker, conn: Connection, request: Request, leftover: bytes) -> bytes:
    """The urlencoded body of a POST (b"" for any other method). 411 without a length,
    413 beyond MAX_FORM_BYTES, 400 for another kind of body or one that does not come
    within <header-timeout>."""
    if request.method != "POST":
        return b""
    length = content_length(request)
    if length > MAX_FORM_BYTES:
        raise ProtocolError(f"Form larger than {MAX_FORM_BYTES} bytes", 413)
    kind = (request.header("content-type") or "").split(";")[0].strip().lower()
    if length and kind != FORM_TYPE:
        raise ProtocolError(f"Form expected as {FORM_TYPE}", 400)
    body = bytearray(leftover[:length])
    wait = worker.cfg.limits.header_timeout
    with gevent.Timeout(wait, ProtocolError(f"Form not sent within {wait}s", 400)):
        while len(body) < length:
            data = conn.sock.recv(FORM_READ_SIZE)
            if not data:
                raise ConnectionResetError("closed before its form ended")
            body += data[:length - len(body)]
    return bytes(body)


def content_length(request: Request) -> int:
    """A POST's declared body length; 411 when it has none (or a chunked one)."""
    value = request.header("content-length")
    if value is None or not value.strip().isdigit():
        raise ProtocolError("Content-Length required", 411)
    return int(value)


def overview_page(worker: Worker, conn: Connection, command: str, call: AdminCall) -> None:
    """Server, every live mount (hidden ones marked), relays and the slave table."""
    authorize(worker, call.request, mount=None)
    mounts = stats.collect_mounts(worker)
    now = time.monotonic()
    targets = [t for t in worker.redirect_targets if t.live(now)]
    loads = {t.key: f"{t.utilisation(0):.0%}" for t in targets if t.load is not None}
    send_page(worker, conn, render_admin_overview(
        global_stats(stats.collect_server(worker)), stats.stats_of(worker, mounts),
        {m.name for m in mounts if m.settings.hidden}, slave_rows(targets, now, loads),
        version=__version__))


def mount_page(worker: Worker, conn: Connection, command: str, call: AdminCall) -> None:
    """One mount: its figures, its forms (title, move, kill) and its listeners."""
    name, _ = require_mount(worker, call)
    figures = [m for m in stats.collect_mounts(worker) if m.name == name]
    shown = dict(stats.stats_of(worker, figures)).get(name, {})
    live = [m.name for m in stats.live_mounts(worker)]
    send_page(worker, conn, render_admin_mount(name, shown, admin.listed_clients(worker, name),
                                               live, version=__version__))


def result_page(worker: Worker, conn: Connection, command: str, call: AdminCall) -> None:
    """Run a command that acts; answer what it did as a page with the way back."""
    act = admin.ACTIONS.get(command.removesuffix(".xsl"))
    if act is None:
        authorize(worker, call.request, mount=None)
        raise ProtocolError("Unrecognised command", 400)
    outcome = act(worker, conn, call)
    mount = call.text("mount")
    live = mount is not None and mount in worker.mounts and not command.startswith("killsource")
    back = mount_page_url(mount) if live and mount is not None else "/admin/"
    send_page(worker, conn, render_admin_result(outcome.message, outcome.ok, back,
                                                version=__version__))


def send_page(worker: Worker, conn: Connection, body: bytes) -> None:
    conn.send(render_text(200, body, HTML_TYPE, server_id=worker.cfg.server_id, now=time.time(),
                          extra_headers=ADMIN_HEADERS))


# admin_ui.admin_page's answer -> the handler drawing that page.
PAGES: dict[str, Callable[[Worker, Connection, str, AdminCall], None]] = {
    OVERVIEW: overview_page,
    MOUNT_PAGE: mount_page,
    RESULT: result_page,
}
