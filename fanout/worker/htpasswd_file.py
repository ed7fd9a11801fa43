"""htpasswd files as a worker reads and edits them (listener authentication, manageauth).

Theory of operation: a file is re-read whenever its inode, size or mtime (in ns) changed,
so an edit or a `manageauth` on another worker is seen at the next login (2.4.4 compares
whole seconds and misses a second change within one second). A missing file means no
users. Edits take an exclusive flock (held for microseconds): adding appends a line,
deleting writes a new file beside it and renames it over the old one. The wire format is
`fanout/protocol/htpasswd.py`'s.
"""
from __future__ import annotations

import fcntl
import logging
import os
import stat
import tempfile
from contextlib import contextmanager
from typing import Iterator

from fanout.config import HtpasswdAuth, ListenerAuth
from fanout.protocol.errors import ProtocolError
from fanout.protocol.htpasswd import (
    Htpasswd, check_new_user, parse_htpasswd, user_line, without_user,
)
from fanout.protocol.listener_auth import (
    ADD_FAILED, DELETE_FAILED, USER_ADDED, USER_DELETED, USER_EXISTS,
)

log = logging.getLogger("fanout.auth")


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


class HtpasswdFiles:
    """Every htpasswd file this worker read, by path: one HtpasswdFile each."""

    def __init__(self) -> None:
        self.files: dict[str, HtpasswdFile] = {}

    def get(self, path: str) -> HtpasswdFile:
        return self.files.setdefault(path, HtpasswdFile(path))

    def manage(self, auth: ListenerAuth, action: str, user: str | None,
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
        users = self.get(auth.filename)
        return users.add(user, password or "") if action == "add" else users.delete(user)

    def user_names(self, auth: ListenerAuth) -> list[str]:
        """The users `auth` knows of (none for url authentication)."""
        if not isinstance(auth, HtpasswdAuth):
            return []
        return list(self.get(auth.filename).users())


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
