"""The ``<paths><deny-ip>`` / ``<paths><allow-ip>`` files, read and kept up to date.

Theory of operation. Each worker holds an ``AddressFilter``; the accept path asks it
``refusal(ip, now)`` for every new connection (``fanout.worker.edge``). With no file
configured that is one attribute test. With files, each is looked at (one ``stat``) at
most every RECHECK_INTERVAL seconds, on the connection that finds the interval over, and
read again only when it changed (inode, mtime or size): a file edited while the server
runs takes effect within RECHECK_INTERVAL, as in 2.4.4 (which looks every 10 s and
compares the mtime only). The matching is ``fanout.protocol.address_list``.

A file that cannot be read leaves the list as it was (none, at start: then nothing is
refused on its account, as in 2.4.4). The supervisor says so once at start and on each
SIGHUP (``warn_unreadable``, naming the element); a worker says it only when a file it
had read becomes unreadable, once until it can be read again (2.4.4 repeats its warning
every 10 s while the file is missing).
"""
from __future__ import annotations

import logging
import os

from fanout.config import Config, Paths
from fanout.protocol.address_list import parse_address_list, refusal

log = logging.getLogger("fanout")

# Seconds between two looks at a file: an edit takes effect within this. A stat every two
# seconds per worker costs nothing; 2.4.4 waits 10 s, which only makes edits slower.
RECHECK_INTERVAL = 2.0
DENY_ELEMENT = "icecast/paths/deny-ip"
ALLOW_ELEMENT = "icecast/paths/allow-ip"
# What an unreadable file means for the connections, by element (see the module doc).
_UNREAD_MEANS = {DENY_ELEMENT: "no address is denied by it until it can be read",
                 ALLOW_ELEMENT: "it does not restrict who connects until it can be read"}


def unreadable_message(element: str, path: str, exc: OSError) -> str:
    return (f"{element}: cannot read {path}: {exc.strerror or exc}; "
            f"{_UNREAD_MEANS[element]}")


def read_file(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def warn_unreadable(config: Config) -> None:
    """One warning per address file of `config` that cannot be read (start, SIGHUP)."""
    for element, path in _files_of(config.paths):
        try:
            read_file(path)
        except OSError as exc:
            log.warning("%s", unreadable_message(element, path, exc))


def _files_of(paths: Paths) -> list[tuple[str, str]]:
    pairs = [(DENY_ELEMENT, paths.deny_ip), (ALLOW_ELEMENT, paths.allow_ip)]
    return [(element, path) for element, path in pairs if path is not None]


class AddressFile:
    """One address file: its entries as last read, re-read when it changes."""

    def __init__(self, element: str, path: str) -> None:
        self.element = element
        self.path = path
        self.addresses: frozenset[str] | None = None  # None: never read
        self.version: tuple[int, int, int, int] | None = None  # (dev, ino, mtime_ns, size) read
        self.next_look = float("-inf")  # monotonic time of the next stat
        self.failing = True  # unreadable now, and said so (the supervisor says it at start)

    def current(self, now: float) -> frozenset[str] | None:
        """The addresses listed, looking at the file first if RECHECK_INTERVAL is over."""
        if now >= self.next_look:
            self.next_look = now + RECHECK_INTERVAL
            self.reload()
        return self.addresses

    def reload(self) -> None:
        """Read the file if it changed since it was read; keep the old list if it cannot be."""
        try:
            stat = os.stat(self.path)
            version = (stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)
            if version == self.version:
                return
            entries = parse_address_list(read_file(self.path))
        except OSError as exc:
            if not self.failing:
                log.warning("%s", unreadable_message(self.element, self.path, exc))
            self.failing = True
            return
        self.failing = False
        self.version, self.addresses = version, frozenset(entries)
        log.info('%d entries read from file "%s"', len(entries), self.path)  # 2.4.4's line


class AddressFilter:
    """A worker's deny and allow files (see the module doc)."""

    def __init__(self) -> None:
        self.denied: AddressFile | None = None
        self.allowed: AddressFile | None = None

    def configure(self, paths: Paths) -> None:
        """Follow a new config; a file whose path did not change keeps what was read."""
        self.denied = _same_or_new(self.denied, DENY_ELEMENT, paths.deny_ip)
        self.allowed = _same_or_new(self.allowed, ALLOW_ELEMENT, paths.allow_ip)

    def refusal(self, ip: str, now: float) -> str | None:
        """Why a connection from `ip` must be dropped (address_list.BANNED, NOT_ALLOWED),
        or None; `now` is the monotonic clock."""
        if self.denied is None and self.allowed is None:
            return None
        denied = self.denied.current(now) if self.denied is not None else None
        allowed = self.allowed.current(now) if self.allowed is not None else None
        return refusal(ip, denied, allowed)


def _same_or_new(current: AddressFile | None, element: str, path: str | None) -> AddressFile | None:
    if path is None:
        return None
    if current is not None and current.path == path:
        return current
    return AddressFile(element, path)
