"""Listener authentication in a worker: who may listen to a mount with `<authentication>`.

Theory of operation (Icecast 2.4.4, PROTOCOL.md §5.1 and §5.5; wire formats in
`fanout/protocol/htpasswd.py` and `fanout/protocol/listener_auth.py`). `serve_listener`
runs inside `login()`, which decides before the mount is even looked up, as 2.4.4 does
(bad credentials get 401 on a mount that is down; good ones then get its 404):

- htpasswd: the Basic credentials must match the file, which is re-read whenever its
  inode, size or mtime (in ns) changed, so an edit or a `manageauth` on another worker is
  seen at the next login (2.4.4 compares whole seconds and misses a second change within
  one second). A missing file means no users.
- url: `listener_add` is POSTed over a gevent socket (the hub keeps serving) and must
  answer within the authenticator's timeout; an auth server that refuses, is down or is
  slow means 401. More than MAX_PENDING listeners of this worker waiting on one mount's
  auth server get 403 "busy, please try again later" (2.4.4 counts per mount).
- A request with the relay credentials is a slave: let in without asking, as KH does for
  slave fetches, so protected mounts can be relayed (2.4.4 answers it 401, but 2.4.4
  slaves send no credentials on stream fetches, so they still get 401 here too).

A let-in listener is a session of this worker (`Worker.sessions`), keyed by connection
id: its user (for
`allow_duplicate_users=0`, 2.4.4's default, checked on every worker with the
`auth_users` gather; two logins racing on two workers can both get in), the auth
server's time limit (a timer closes it), and the `listener_remove` owed when it leaves.
The pump owns the socket and closes it for many reasons, so a greenlet looks every
SESSION_CHECK for sessions whose listener is closed; a request that ends without being
served ends its session at once. Every accepted `listener_add` gets its `listener_remove`.
"""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import Iterator

import gevent

from fanout import supervised
from fanout.httpclient import FetchError, exchange
from fanout.config import HtpasswdAuth, UrlAuth
from fanout.protocol.auth import Credentials, basic_credentials
from fanout.protocol.errors import ProtocolError
from fanout.protocol.htpasswd import password_matches
from fanout.protocol.http import Request
from fanout.protocol.listener_auth import (
    ListenerFacts, listener_add_form, listener_remove_form, parse_target, read_verdict,
    render_post,
)
from fanout.worker.client import Connection
from fanout.worker.credentials import is_relay_client
from fanout.worker.pump import kill_listener
from fanout.worker.queries import query
from fanout.worker.state import LocalMount, Login, Worker, info_of
from fanout.worker.stats import advertised_port

log = logging.getLogger("fanout.auth")

# Listeners of one mount that may wait on its auth server in one worker (2.4.4: 100).
MAX_PENDING = 100
# Seconds between two looks for sessions whose listener has left.
SESSION_CHECK = 0.5


@contextmanager
def login(worker: Worker, conn: Connection, request: Request) -> Iterator[Login]:
    """Let the listener in, or raise 401 (403 while too many wait on the auth server);
    a let-in listener stays a session for as long as it listens."""
    current = authenticate(worker, conn, request)
    if current.auth is None:
        yield current
        return
    worker.sessions.by_id[conn.id] = current
    try:
        yield current
    finally:
        if current.info is None:  # not served: the request ends here
            end_session(worker, current)


def authenticate(worker: Worker, conn: Connection, request: Request) -> Login:
    live = worker.mounts.get(request.path)  # its resolved settings are at hand
    resolved = live.resolved if live is not None else worker.cfg.resolve_mount(request.path)
    auth = resolved.authentication
    if auth is not None and is_relay_client(worker, request):
        auth = None  # a slave (see the module doc)
    current = Login(request.path, auth, conn, request, basic_credentials(request))
    if isinstance(auth, HtpasswdAuth):
        check_htpasswd(worker, auth, current)
    elif isinstance(auth, UrlAuth) and auth.listener_add is not None:
        ask_auth_server(worker, auth, current)  # 2.4.4: without listener_add, all get in
    return current


def check_htpasswd(worker: Worker, auth: HtpasswdAuth, current: Login) -> None:
    given = current.credentials
    if given is None:
        raise ProtocolError(f"no credentials for {current.mount}", 401)
    users = worker.htpasswd.get(auth.filename).users()
    if not password_matches(users, given.user, given.password):
        raise ProtocolError(f"wrong user or password ({given.user!r}) for {current.mount}", 401)


def ask_auth_server(worker: Worker, auth: UrlAuth, current: Login) -> None:
    assert auth.listener_add is not None
    waiting = worker.sessions.waiting
    if waiting[current.mount] >= MAX_PENDING:
        raise ProtocolError("busy, please try again later", 403)
    form = listener_add_form(listener_facts(worker, current), passed_headers(auth, current.request))
    waiting[current.mount] += 1
    try:
        head = post(worker, auth, auth.listener_add, form, current)
    finally:
        waiting[current.mount] -= 1
    verdict = read_verdict(head or b"", auth.auth_header, auth.timelimit_header)
    if not verdict.accepted:
        why = verdict.message or ("no answer" if head is None else "not accepted")
        raise ProtocolError(f"listener refused by the auth server for {current.mount}: {why}", 401)
    current.timelimit = verdict.timelimit


def listener_facts(worker: Worker, current: Login) -> ListenerFacts:
    given, config = current.credentials, worker.cfg
    return ListenerFacts(
        config.hostname, advertised_port(worker), current.conn.id, current.request.target,
        given.user if given else "", given.password if given else "", current.conn.ip,
        current.request.header("user-agent"))


def passed_headers(auth: UrlAuth, request: Request) -> list[tuple[str, str]]:
    """The `headers` option's listener headers that are present, named with the prefix."""
    present = [(name, request.header(name)) for name in auth.headers]
    return [(auth.header_prefix + name, value) for name, value in present if value is not None]


def post(worker: Worker, auth: UrlAuth, url: str, form: bytes, current: Login) -> bytes | None:
    """POST `form` to the auth server at `url`; its response head, or None (logged) when
    none came within the authenticator's timeout."""
    target = parse_target(url)
    credentials = target.credentials or server_credentials(auth, current.credentials)
    request = render_post(target, form, worker.cfg.server_id, credentials)
    try:
        with gevent.Timeout(auth.timeout, FetchError(f"no answer within {auth.timeout}s")):
            return exchange(target.host, target.port, request, tls=target.tls)
    except FetchError as exc:  # refused, unreachable, timed out, TLS failure
        log.warning("auth server %s failed: %s", url, exc)
        return None


def server_credentials(auth: UrlAuth, given: Credentials | None) -> tuple[str, str] | None:
    """What to log in to the auth server with: the options' user and password, else the
    listener's own (2.4.4)."""
    if auth.username is not None and auth.password is not None:
        return auth.username, auth.password
    return None if given is None else (given.user, given.password)


# ---- while it listens ------------------------------------------------------------------


@query
def auth_users(worker: Worker, mount: str, exclude: int) -> list[str]:
    """The users listening to `mount` here by listener authentication, but connection
    `exclude` (the one asking): the duplicate-login check."""
    return worker.sessions.users_on(mount, exclude)


def refuse_duplicate(worker: Worker, current: Login) -> None:
    """401 if the user already listens to this mount, on any worker, and the mount's
    authentication refuses duplicate users (2.4.4's default)."""
    auth, user = current.auth, current.user
    if auth is None or auth.allow_duplicate_users or user is None:
        return
    answers = worker.gather(auth_users, mount=current.mount, exclude=current.conn.id)
    if any(user in (answer or ()) for answer in answers):
        raise ProtocolError(f"user {user!r} already listens to {current.mount}", 401)


def full_status(current: Login) -> int:
    """The status refusing a listener of a full mount: 2.4.4 says 401 on a mount with
    authentication (PROTOCOL.md §5.5, a quirk) and 403 elsewhere."""
    return 403 if current.auth is None else 401


def admitted(worker: Worker, current: Login, mount: LocalMount) -> None:
    """`current` is served on `mount` now (add_listener has just queued it): watch it."""
    if current.auth is None:
        return
    current.info = next(info_of(l) for l in reversed(mount.listeners)
                        if info_of(l).conn is current.conn)
    if current.timelimit is not None:
        supervised.spawn_later(current.timelimit, "auth.expire", expire, worker, current)
    sessions = worker.sessions
    if sessions.watcher is None or sessions.watcher.dead:
        sessions.watcher = supervised.spawn("auth.sweep", end_left, worker, restart=True)


def end_left(worker: Worker) -> None:
    """End the sessions whose listener the pump closed, while any is being served."""
    sessions = worker.sessions.by_id
    while any(s.info is not None for s in sessions.values()):
        gevent.sleep(SESSION_CHECK)
        for session in [s for s in sessions.values() if not s.listening]:
            end_session(worker, session)


def expire(worker: Worker, current: Login) -> None:
    """Close a listener whose time limit is up, on whichever mount it is now."""
    if not current.listening:
        return
    for name in list(worker.mounts):
        if kill_listener(worker, name, current.conn.id):
            log.info("%s: time limit of %ss reached on %s; disconnected", current.conn.ip,
                     current.timelimit, name)
            return


def end_session(worker: Worker, ended: Login) -> None:
    """Forget `ended`; tell the auth server it left, if it wants to know."""
    worker.sessions.by_id.pop(ended.conn.id, None)
    auth = ended.auth
    if isinstance(auth, UrlAuth) and auth.listener_remove is not None:
        duration = int(time.time() - ended.conn.started)
        form = listener_remove_form(listener_facts(worker, ended), duration)
        supervised.spawn("auth.notify", post, worker, auth, auth.listener_remove, form, ended,
                         restart=False)
