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

A let-in listener is a session of this worker, keyed by connection id: its user (for
`allow_duplicate_users=0`, 2.4.4's default, checked on every worker with the
`auth_users` gather; two logins racing on two workers can both get in), the auth
server's time limit (a timer closes it), and the `listener_remove` owed when it leaves.
The pump owns the socket and closes it for many reasons, so a greenlet looks every
SESSION_CHECK for sessions whose listener is closed; a request that ends without being
served ends its session at once. Every accepted `listener_add` gets its `listener_remove`.
"""
from __future__ import annotations

import fcntl
import logging
import os
import stat
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import gevent
from gevent import socket as gsocket
from gevent import ssl as gssl

from fanout import supervised
from fanout.config import HtpasswdAuth, ListenerAuth, UrlAuth
from fanout.protocol.auth import Credentials, basic_credentials
from fanout.protocol.errors import ProtocolError
from fanout.protocol.htpasswd import (
    Htpasswd, check_new_user, parse_htpasswd, password_matches, user_line, without_user,
)
from fanout.protocol.http import Request
from fanout.protocol.listener_auth import (
    ADD_FAILED, DELETE_FAILED, USER_ADDED, USER_DELETED, USER_EXISTS, ListenerFacts, head_length,
    listener_add_form, listener_remove_form, parse_target, read_verdict, render_post,
)
from fanout.worker.admin_queries import kill_client
from fanout.worker.connection import Connection
from fanout.worker.stats import advertised_port
from fanout.worker.streamlist import is_relay_client
from fanout.worker.worker import LocalMount

log = logging.getLogger("fanout.auth")

# Listeners of one mount that may wait on its auth server in one worker (2.4.4: 100).
MAX_PENDING = 100
# Seconds between two looks for sessions whose listener has left.
SESSION_CHECK = 0.5
# Bytes of an auth server's response head read at most, and per recv.
MAX_ANSWER_HEAD = 16384
READ_SIZE = 4096


@dataclass(slots=True)
class Login:
    """One listener request, and what its mount's authentication made of it."""

    mount: str  # the mount asked for: the one whose <authentication> applies
    auth: ListenerAuth | None  # None: an open mount, or a slave
    conn: Connection
    request: Request
    credentials: Credentials | None
    timelimit: int | None = None  # seconds the auth server lets it stay
    info: Any = None  # the pump's ListenerInfo, once served

    @property
    def user(self) -> str | None:
        return None if self.credentials is None else self.credentials.user

    @property
    def listening(self) -> bool:
        return self.info is None or not self.info.closed


class Sessions:
    """This worker's let-in listeners of protected mounts, by connection id."""

    def __init__(self) -> None:
        self.by_id: dict[int, Login] = {}
        self.waiting: Counter[str] = Counter()  # mount -> listeners waiting on its auth server
        self.watcher: gevent.Greenlet | None = None

    def users_on(self, mount: str, exclude: int) -> list[str]:
        return [s.user for s in self.by_id.values()
                if s.mount == mount and s.conn.id != exclude and s.user is not None
                and s.listening]

    def watch(self, worker: Any) -> None:
        if self.watcher is None or self.watcher.dead:
            self.watcher = supervised.spawn("auth.sweep", self.end_left, worker, restart=True)

    def end_left(self, worker: Any) -> None:
        """End the sessions whose listener the pump closed, while any is being served."""
        while any(s.info is not None for s in self.by_id.values()):
            gevent.sleep(SESSION_CHECK)
            for session in [s for s in self.by_id.values() if not s.listening]:
                end_session(worker, session)


SESSIONS = Sessions()


@contextmanager
def login(worker: Any, conn: Connection, request: Request) -> Iterator[Login]:
    """Let the listener in, or raise 401 (403 while too many wait on the auth server);
    a let-in listener stays a session for as long as it listens."""
    current = authenticate(worker, conn, request)
    if current.auth is None:
        yield current
        return
    SESSIONS.by_id[conn.id] = current
    try:
        yield current
    finally:
        if current.info is None:  # not served: the request ends here
            end_session(worker, current)


def authenticate(worker: Any, conn: Connection, request: Request) -> Login:
    live = worker.mounts.get(request.path)  # its resolved settings are at hand
    resolved = live.resolved if live is not None else worker.cfg.resolve_mount(request.path)
    auth = resolved.authentication
    if auth is not None and is_relay_client(worker, request):
        auth = None  # a slave (see the module doc)
    current = Login(request.path, auth, conn, request, basic_credentials(request))
    if isinstance(auth, HtpasswdAuth):
        check_htpasswd(auth, current)
    elif isinstance(auth, UrlAuth) and auth.listener_add is not None:
        ask_auth_server(worker, auth, current)  # 2.4.4: without listener_add, all get in
    return current


def check_htpasswd(auth: HtpasswdAuth, current: Login) -> None:
    given = current.credentials
    if given is None:
        raise ProtocolError(f"no credentials for {current.mount}", 401)
    if not password_matches(htpasswd_file(auth.filename).users(), given.user, given.password):
        raise ProtocolError(f"wrong user or password ({given.user!r}) for {current.mount}", 401)


def ask_auth_server(worker: Any, auth: UrlAuth, current: Login) -> None:
    assert auth.listener_add is not None
    waiting = SESSIONS.waiting
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


def listener_facts(worker: Any, current: Login) -> ListenerFacts:
    given, config = current.credentials, worker.cfg
    return ListenerFacts(
        config.hostname, advertised_port(worker), current.conn.id, current.request.target,
        given.user if given else "", given.password if given else "", current.conn.ip,
        current.request.header("user-agent"))


def passed_headers(auth: UrlAuth, request: Request) -> list[tuple[str, str]]:
    """The `headers` option's listener headers that are present, named with the prefix."""
    present = [(name, request.header(name)) for name in auth.headers]
    return [(auth.header_prefix + name, value) for name, value in present if value is not None]


def post(worker: Any, auth: UrlAuth, url: str, form: bytes, current: Login) -> bytes | None:
    """POST `form` to the auth server at `url`; its response head, or None (logged) when
    none came within the authenticator's timeout."""
    target = parse_target(url)
    credentials = target.credentials or server_credentials(auth, current.credentials)
    request = render_post(target, form, worker.cfg.server_id, credentials)
    try:
        with gevent.Timeout(auth.timeout, TimeoutError(f"no answer within {auth.timeout}s")):
            return exchange(target.host, target.port, target.tls, request)
    except OSError as exc:  # refused, unreachable, timed out, TLS failure
        log.warning("auth server %s failed: %s", url, exc)
        return None


def server_credentials(auth: UrlAuth, given: Credentials | None) -> tuple[str, str] | None:
    """What to log in to the auth server with: the options' user and password, else the
    listener's own (2.4.4)."""
    if auth.username is not None and auth.password is not None:
        return auth.username, auth.password
    return None if given is None else (given.user, given.password)


def exchange(host: str, port: int, tls: bool, request: bytes) -> bytes:
    """Send `request`; return the response head (what came, if the peer closed early)."""
    sock = gsocket.create_connection((host, port))
    try:
        if tls:
            sock = gssl.create_default_context().wrap_socket(sock, server_hostname=host)
        sock.sendall(request)
        data = b""
        while head_length(data) < 0 and len(data) < MAX_ANSWER_HEAD:
            chunk = sock.recv(READ_SIZE)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    end = head_length(data)
    return data if end < 0 else data[:end]


# ---- while it listens ------------------------------------------------------------------


def refuse_duplicate(worker: Any, current: Login) -> None:
    """401 if the user already listens to this mount, on any worker, and the mount's
    authentication refuses duplicate users (2.4.4's default)."""
    auth, user = current.auth, current.user
    if auth is None or auth.allow_duplicate_users or user is None:
        return
    answers = worker.gather("auth_users", mount=current.mount, exclude=current.conn.id)
    if any(user in (answer or ()) for answer in answers):
        raise ProtocolError(f"user {user!r} already listens to {current.mount}", 401)


def full_status(current: Login) -> int:
    """The status refusing a listener of a full mount: 2.4.4 says 401 on a mount with
    authentication (PROTOCOL.md §5.5, a quirk) and 403 elsewhere."""
    return 403 if current.auth is None else 401


def admitted(worker: Any, current: Login, mount: LocalMount) -> None:
    """`current` is served on `mount` now (add_listener has just queued it): watch it."""
    if current.auth is None:
        return
    current.info = next(l.tag for l in reversed(mount.listeners) if l.tag.conn is current.conn)
    if current.timelimit is not None:
        supervised.spawn_later(current.timelimit, "auth.expire", expire, worker, current)
    SESSIONS.watch(worker)


def expire(worker: Any, current: Login) -> None:
    """Close a listener whose time limit is up, on whichever mount it is now."""
    if not current.listening:
        return
    for name in list(worker.mounts):
        if kill_client(worker, name, current.conn.id):
            log.info("%s: time limit of %ss reached on %s; disconnected", current.conn.ip,
                     current.timelimit, name)
            return


def end_session(worker: Any, ended: Login) -> None:
    """Forget `ended`; tell the auth server it left, if it wants to know."""
    SESSIONS.by_id.pop(ended.conn.id, None)
    auth = ended.auth
    if isinstance(auth, UrlAuth) and auth.listener_remove is not None:
        duration = int(time.time() - ended.conn.started)
        form = listener_remove_form(listener_facts(worker, ended), duration)
        supervised.spawn("auth.notify", post, worker, auth, auth.listener_remove, form, ended,
                         restart=False)


# ---- htpasswd files ----------------------------------------------------------------------


class HtpasswdFile:
    """One htpasswd file as this worker last read it (see the module doc)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.stamp: tuple[int, int, int] | None = None
        self.parsed = Htpasswd({})

    def users(self) -> dict[str, str]:
        """user → password hash, re-read first if the file changed."""
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            self.stamp, self.parsed = None, Htpasswd({})
            return {}
        except OSError as exc:
            log.warning("htpasswd file %s: %s; keeping the users read before", self.path, exc)
            return self.parsed.users
        stamp = (info.st_ino, info.st_size, info.st_mtime_ns)
        if stamp != self.stamp:
            self.reload(stamp)
        return self.parsed.users

    def reload(self, stamp: tuple[int, int, int]) -> None:
        try:
            with open(self.path, "rb") as file:
                parsed = parse_htpasswd(file.read())
        except OSError as exc:
            log.warning("htpasswd file %s: %s; keeping the users read before", self.path, exc)
            return
        self.stamp, self.parsed = stamp, parsed
        log.info("htpasswd file %s read: %d users", self.path, len(parsed.users))
        if parsed.bad_lines:
            log.warning("htpasswd file %s: lines %s have no ':', skipped", self.path,
                        ", ".join(map(str, parsed.bad_lines)))

    def add(self, user: str, password: str) -> str:
        """Append `user` unless listed; the manageauth message saying what happened."""
        reason = check_new_user(user)
        if reason is not None:
            log.warning("htpasswd file %s: user %r not added: %s", self.path, user, reason)
            return ADD_FAILED
        try:
            with locked(self.path, create=True) as fd:
                data = read_all(fd)
                if user in parse_htpasswd(data).users:
                    return USER_EXISTS
                separator = b"\n" if data and not data.endswith(b"\n") else b""
                os.write(fd, separator + user_line(user, password))
        except OSError as exc:
            log.warning("htpasswd file %s: user %r not added: %s", self.path, user, exc)
            return ADD_FAILED
        return USER_ADDED

    def delete(self, user: str) -> str:
        """Remove every line of `user` (none is no error, as in 2.4.4); the message."""
        try:
            with locked(self.path) as fd:
                replace_file(self.path, without_user(read_all(fd), user), os.fstat(fd).st_mode)
        except OSError as exc:
            log.warning("htpasswd file %s: user %r not deleted: %s", self.path, user, exc)
            return DELETE_FAILED
        return USER_DELETED


_FILES: dict[str, HtpasswdFile] = {}


def htpasswd_file(path: str) -> HtpasswdFile:
    return _FILES.setdefault(path, HtpasswdFile(path))


@contextmanager
def locked(path: str, create: bool = False) -> Iterator[int]:
    """An fd of the file at `path` (created if missing and `create`) under an exclusive
    flock, held for microseconds by whoever has it. If another worker replaced the file
    while we waited, the lock is taken again on the new one."""
    flags = os.O_RDWR | os.O_APPEND | (os.O_CREAT if create else 0)
    while True:
        fd = os.open(path, flags, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                yield fd
                return
        finally:
            os.close(fd)


def read_all(fd: int) -> bytes:
    return os.pread(fd, os.fstat(fd).st_size, 0)


def replace_file(path: str, data: bytes, mode: int) -> None:
    """Write `data` to a new file beside `path` and rename it over `path` (atomic)."""
    fd, temporary = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)),
                                     prefix=".htpasswd-")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.chmod(temporary, stat.S_IMODE(mode))
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


# ---- /admin/manageauth -------------------------------------------------------------------


def manage_users(auth: ListenerAuth, action: str, user: str | None,
                 password: str | None) -> str | None:
    """Do `action` (add, delete; anything else lists) on `auth`'s users; the message
    saying what happened, None for a list. Raises 400 for a missing user or password.
    Only htpasswd has users to manage: url ones fail as in 2.4.4."""
    if action not in ("add", "delete"):
        return None
    if user is None or (action == "add" and password is None):
        raise ProtocolError("missing parameter", 400)
    if not isinstance(auth, HtpasswdAuth):
        return ADD_FAILED if action == "add" else DELETE_FAILED
    users = htpasswd_file(auth.filename)
    return users.add(user, password or "") if action == "add" else users.delete(user)


def user_names(auth: ListenerAuth) -> list[str]:
    """The users `auth` knows of (none for url authentication)."""
    if not isinstance(auth, HtpasswdAuth):
        return []
    return list(htpasswd_file(auth.filename).users())
