"""The master side of master–slave relaying (PROTOCOL.md §1.3, §1.8, §1.10).

`/admin/streamlist.txt` answers slaves (relay credentials only, as 2.4.4) with every
non-hidden mount, one per CRLF line, then closes. `/admin/streams` is KH's flavour: relay
or admin credentials; without `mount=` it lists `/admin/streams?mount=/x` lines, with
`mount=/x` it is a slave's stream fetch of `/x`, served as a listener that the listener
code recognises as a slave by its relay credentials (no max-listeners, not counted).
With `<max-redirect-slaves>` set, a list request carrying KH's redirect registration
(`rserver`, `rport`, `interval`, §2.3) is passed to the supervisor, which keeps the table.
A fanout slave's registration also carries its load (issue 12); the answer to it says
`X-Fanout-Refresh`, which puts the slave on the fast registration schedule.
"""
from __future__ import annotations

import dataclasses
import time

from fanout.messages import SlaveRegister
from fanout.protocol.errors import ProtocolError
from fanout.protocol.http import Request
from fanout.protocol.redirect import parse_registration, refresh_header
from fanout.protocol.responses import render_text
from fanout.protocol.streamlist import render_kh_streams, render_streamlist
from fanout.worker.client import Connection
from fanout.worker.credentials import is_admin, is_relay_client
from fanout.worker.listeners import serve_listener
from fanout.worker.state import Worker

TEXT_TYPE = "text/plain; charset=utf-8"


def public_mounts(worker: Worker) -> list[str]:
    """Mounts a slave may relay: every live mount not configured hidden, and every
    configured mount that is served from its fallback just now (a "virtual" mount, §1.3:
    so a slave keeps relaying a mount while the master serves it from a fallback)."""
    cfg = worker.cfg
    live = [name for name, mount in worker.mounts.items() if not mount.ended]
    virtual = [block.mount_name for block in cfg.mounts
               if block.mount_name and not any(c in block.mount_name for c in "*?[")
               and block.mount_name not in live
               and any(m in live for m in cfg.fallback_chain(block.mount_name))]
    return [name for name in (*live, *virtual) if not cfg.resolve_mount(name).hidden]


def command_streamlist_txt(worker: Worker, conn: Connection, request: Request) -> None:
    if not is_relay_client(worker, request):
        raise ProtocolError("You need to authenticate", 401)
    fast = register_slave(worker, conn, request)
    send_list(worker, conn, render_streamlist(public_mounts(worker)), fast)


def command_streams(worker: Worker, conn: Connection, request: Request) -> None:
    if not (is_relay_client(worker, request) or is_admin(worker, request)):
        raise ProtocolError("You need to authenticate", 401)
    mount = request.query_value("mount")
    if mount is None:
        fast = register_slave(worker, conn, request)
        return send_list(worker, conn, render_kh_streams(public_mounts(worker)), fast)
    serve_listener(worker, conn, dataclasses.replace(request, path=mount), b"")


def register_slave(worker: Worker, conn: Connection, request: Request) -> bool:
    """Pass an authenticated poll's redirect registration on, if this master takes any;
    whether it reported its load (the answer then asks for the fast schedule)."""
    registration = parse_registration(request.query)
    if registration is None or worker.cfg.max_redirect_slaves <= 0:
        return False
    worker.link.send(SlaveRegister(registration.host, registration.port,
                                   registration.interval, registration.load, conn.ip,
                                   registration.tls_port, registration.bad_tls_port))
    return registration.load is not None


def send_list(worker: Worker, conn: Connection, body: bytes, fast: bool = False) -> None:
    extra = [refresh_header()] if fast else []
    conn.send(render_text(200, body, TEXT_TYPE, server_id=worker.cfg.server_id, now=time.time(),
                          extra_headers=extra))
