"""Who the server runs as and where: ``<security>`` and ``<paths><pidfile>``, as Icecast
2.4.4 sets them up (``src/main.c: _server_proc_init, _ch_root_uid_setup``).

Theory of operation. ``secure_process`` is the one call, made by the supervisor right
after it has bound every listen socket (so ports below 1024 work) and before it opens
anything else or starts a worker:

1. decide, before changing anything, whether the server would end up as root, and refuse
   that unless ``--allow-root`` (2.4.4 refuses too: "You should not run icecast2 as root");
2. resolve ``changeowner``'s user and group (while /etc/passwd is still reachable);
3. write the pid file, refusing if a live fanout holds it;
4. chroot into ``<paths><basedir>`` and chdir to its ``/``;
5. drop to the user: its supplementary groups, then the group, then the user; check
   that root cannot be regained.

What is opened before the chroot stays usable after it: the bound sockets, the pid
file's directory (so the file is removed at exit, which 2.4.4 cannot do once chrooted)
and the config file's directory (``ConfigSource``: SIGHUP reloads re-read the file by
name there). Everything opened later is opened as the new user, inside the new root, as
in 2.4.4: the log files (``<logdir>``), the webroot, htpasswd files, dump files, scripts.
Limits: workers are started with exec after the drop, so the changeowner user must be
able to read the Python interpreter, its libraries and fanout (a Python under /root, as
pyenv installs it, is not: install fanout in a venv under /opt, as packaging/ does); and
after the chroot, ``<basedir>`` must hold them at the same paths (a full system tree, or
bind mounts), and /proc; DNS needs /etc/resolv.conf inside it. Without root, changeowner and chroot
are skipped with one line each, as 2.4.4 does. The pid file's directory must be
writable by the new user for the file to be removed at exit.
"""
from __future__ import annotations

import errno
import grp
import logging
import os
import pwd
from dataclasses import dataclass

from fanout.config import ChangeOwner, Config, ConfigError, parse_config
from fanout.startup import EXIT_CONFIG, EXIT_STARTUP, StartupError

log = logging.getLogger("fanout")

ROOT_UID = 0
# A pid file larger than this is not one of ours: it is not read, and not overwritten.
MAX_PIDFILE_BYTES = 64
# What a process's command line must mention for its pid file to count as held.
SERVER_MARK = b"fanout"
PROC = "/proc"  # where a pid's command line is read


@dataclass(frozen=True, slots=True)
class Owner:
    """A resolved ``<changeowner>``."""

    user: str
    uid: int
    gid: int
    groups: tuple[int, ...]  # the user's supplementary groups (its group file entries)


# ---- the decisions (pure) -----------------------------------------------------------------


def root_refusal(euid: int, target_uid: int | None, allow_root: bool) -> str | None:
    """Why the server must not start, or None: it would run as root (its uid now, or the
    changeowner user's) and root was not explicitly allowed."""
    final = euid if target_uid is None or euid != ROOT_UID else target_uid
    if final != ROOT_UID or allow_root:
        return None
    return ("refusing to run as root: set <security><changeowner> to an unprivileged user "
            "and group, or pass --allow-root")


def parse_pid(data: bytes) -> int | None:
    """The pid a pid file holds ("1234\\n"), or None if it holds none."""
    text = data.strip()
    return int(text) if text.isdigit() and len(text) <= 10 and int(text) > 0 else None


# ---- changeowner --------------------------------------------------------------------------


def resolve_owner(change: ChangeOwner) -> Owner:
    """Look the user and group up; raises StartupError (a config error) if either is unknown."""
    try:
        user = pwd.getpwnam(change.user)
    except KeyError:
        raise StartupError(f"config error: icecast/security/changeowner/user: no user "
                           f"{change.user!r} on this system", EXIT_CONFIG) from None
    try:
        group = grp.getgrnam(change.group)
    except KeyError:
        raise StartupError(f"config error: icecast/security/changeowner/group: no group "
                           f"{change.group!r} on this system", EXIT_CONFIG) from None
    groups = tuple(os.getgrouplist(user.pw_name, group.gr_gid))
    return Owner(user.pw_name, user.pw_uid, group.gr_gid, groups)


def drop_to(owner: Owner) -> None:
    """Become ``owner`` for good (groups, then group, then user). Raises StartupError if
    any step fails or root could be regained afterwards."""
    try:
        os.setgroups(list(owner.groups))
        os.setgid(owner.gid)
        os.setuid(owner.uid)
    except OSError as exc:
        raise StartupError(f"cannot change to user {owner.user!r}: {exc.strerror}", EXIT_STARTUP) from None
    if owner.uid != ROOT_UID and _can_regain_root():
        raise StartupError(f"changed to user {owner.user!r} but root could be regained",
                           EXIT_STARTUP)


def _can_regain_root() -> bool:
    try:
        os.setuid(ROOT_UID)
    except PermissionError:
        return False
    return True


# ---- chroot -------------------------------------------------------------------------------


def enter_chroot(basedir: str) -> None:
    """chroot into ``basedir`` and chdir to its root; raises StartupError."""
    try:
        os.chroot(basedir)
        os.chdir("/")
    except OSError as exc:
        raise StartupError(f"config error: icecast/paths/basedir: cannot chroot into "
                           f"{basedir!r}: {exc.strerror}", EXIT_CONFIG) from None


# ---- the pid file -------------------------------------------------------------------------


class PidFile:
    """``<paths><pidfile>``: written at start, removed at exit if it still holds our pid.

    The directory is opened once, so ``remove`` works after a chroot.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        directory, self.name = os.path.split(os.path.abspath(path))
        try:
            self.dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise StartupError(f"config error: icecast/paths/pidfile: {path!r}: {exc.strerror}",
                               EXIT_CONFIG) from None
        self.pid: int | None = None

    def write(self, pid: int) -> None:
        """Write ``pid``; raises StartupError if a live fanout holds the file."""
        holder = self.holder()
        if holder is not None and holder != pid:
            raise StartupError(f"config error: icecast/paths/pidfile: {self.path!r} belongs to "
                               f"the running fanout with pid {holder}", EXIT_CONFIG)
        temporary = f".{self.name}.{pid}"
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=self.dir_fd)
            with os.fdopen(fd, "w") as file:
                file.write(f"{pid}\n")
            os.replace(temporary, self.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        except OSError as exc:
            raise StartupError(f"config error: icecast/paths/pidfile: cannot write "
                               f"{self.path!r}: {exc.strerror}", EXIT_CONFIG) from None
        self.pid = pid

    def holder(self) -> int | None:
        """The pid of a live fanout named in the file, or None."""
        try:
            fd = os.open(self.name, os.O_RDONLY, dir_fd=self.dir_fd)
        except FileNotFoundError:
            return None
        with os.fdopen(fd, "rb") as file:
            pid = parse_pid(file.read(MAX_PIDFILE_BYTES + 1)[:MAX_PIDFILE_BYTES])
        return pid if pid is not None and is_fanout(pid) else None

    def remove(self) -> None:
        """Remove the file if it still holds the pid we wrote (one log line if we cannot)."""
        if self.pid is None:
            return
        try:
            fd = os.open(self.name, os.O_RDONLY, dir_fd=self.dir_fd)
            with os.fdopen(fd, "rb") as file:
                if parse_pid(file.read(MAX_PIDFILE_BYTES)) != self.pid:
                    return
            os.unlink(self.name, dir_fd=self.dir_fd)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("cannot remove the pid file %s: %s", self.path, exc.strerror)
        self.pid = None

    def close(self) -> None:
        os.close(self.dir_fd)


def is_fanout(pid: int) -> bool:
    """Whether ``pid`` is a live process whose command line mentions fanout (a pid file
    left by a crash may name a pid reused since by anything else)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, someone else's
    try:
        with open(f"{PROC}/{pid}/cmdline", "rb") as file:
            return SERVER_MARK in file.read()
    except FileNotFoundError:
        return False
    except OSError as exc:
        return exc.errno in (errno.EACCES, errno.EPERM)  # cannot tell: assume it is


# ---- the config file across a chroot ------------------------------------------------------


class ConfigSource:
    """The config file, readable by name after a chroot: its directory is opened first."""

    def __init__(self, path: str) -> None:
        self.path = path
        directory, self.name = os.path.split(os.path.abspath(path))
        self.dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)

    def read(self) -> bytes:
        """The file's current content (raises OSError like open())."""
        fd = os.open(self.name, os.O_RDONLY, dir_fd=self.dir_fd)
        with os.fdopen(fd, "rb") as file:
            return file.read()

    def load(self) -> Config:
        """The file parsed, as ``startup.load_config`` would read it by name (a SIGHUP
        reload after the chroot). Raises ConfigError."""
        try:
            data = self.read()
        except OSError as error:
            raise ConfigError(self.path, error.strerror or str(error), "a readable file") from None
        return parse_config(data, source=self.path)

    def close(self) -> None:
        os.close(self.dir_fd)


# ---- the one call -------------------------------------------------------------------------


@dataclass
class Secured:
    """What ``secure_process`` leaves for later: the pid file to remove at exit and, after
    a chroot, the config file to reload from."""

    pidfile: PidFile | None
    config_source: ConfigSource | None

    def release(self) -> None:
        """At exit: remove the pid file, close what was kept open."""
        if self.pidfile is not None:
            self.pidfile.remove()
            self.pidfile.close()
            self.pidfile = None
        if self.config_source is not None:
            self.config_source.close()
            self.config_source = None


def secure_process(config: Config, config_path: str | None, *, allow_root: bool) -> Secured:
    """Steps 1-5 of the module doc, for the supervisor once its sockets are bound.

    Raises StartupError (before changing anything when the decision is root's).
    """
    security, euid = config.security, os.geteuid()
    owner = resolve_owner(security.changeowner) if security.changeowner else None
    refusal = root_refusal(euid, owner.uid if owner else None, allow_root)
    if refusal is not None:
        raise StartupError(refusal, EXIT_CONFIG)
    if security.chroot and config.paths.basedir is None:
        raise StartupError("config error: icecast/paths/basedir: missing: expected the "
                           "directory <security><chroot> changes root to", EXIT_CONFIG)
    secured = Secured(PidFile(config.paths.pidfile) if config.paths.pidfile else None, None)
    try:
        if secured.pidfile is not None:
            secured.pidfile.write(os.getpid())
        if security.chroot and config.paths.basedir and _as_root(euid, "chroot"):
            secured.config_source = ConfigSource(config_path) if config_path else None
            enter_chroot(config.paths.basedir)
        if owner is not None and _as_root(euid, "changeowner"):
            drop_to(owner)
    except BaseException:
        secured.release()
        raise
    return secured


def _as_root(euid: int, what: str) -> bool:
    if euid == ROOT_UID:
        return True
    log.warning("<security><%s> needs root: skipped (running as uid %d)", what, euid)
    return False
