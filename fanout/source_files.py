"""Files that go with a mount's source: its dump file, its intro and the playlist log.

* ``DumpFile`` (``<mount><dump-file>``): opened when a source starts, its name put
  through strftime(3) with the local time then, as 2.4.4 does (``%F`` → 2026-12-03),
  opened for appending; every byte the source sends goes in until the source ends.
  A file that cannot be opened or written disables the dump with one log line, and the
  stream goes on (2.4.4: "Cannot open dump file … disabling").
* ``load_intro`` (``<mount><intro>``): the file under the webroot, read once per source
  start (bounded), refused with one log line when its format does not suit the mount.
* ``PlaylistLog`` (``<logging><playlistlog>``): a line per title change, opened for
  each line (titles change every few minutes), so logrotate needs no signal; rotated
  by size as error.log and access.log are (``fanout.protocol.log_rotation``).

Writes are plain blocking file writes from the calling hub: local files take
microseconds, as the access log does.
"""
from __future__ import annotations

import logging
import os
import time

from fanout.config import Config
from fanout.model.intro import intro_mismatch
from fanout.protocol.log_rotation import Rotation
from fanout.protocol.playlist_log import playlist_line

log = logging.getLogger("fanout")

# An intro is held in memory and queued whole for each new listener (until sent): larger
# files are refused. 1 MiB is about a minute of 128 kbit/s audio; intros are jingles.
MAX_INTRO_BYTES = 1024 * 1024
FILE_MODE = 0o644  # dump and playlist files, before the umask


def dump_file_name(pattern: str, now: float) -> str:
    """``pattern`` through strftime(3) with the local time ``now`` (as 2.4.4 names it)."""
    return time.strftime(pattern, time.localtime(now))


class DumpFile:
    """One source's dump: ``open`` at its start, ``write`` its bytes, ``close`` at its end."""

    def __init__(self, name: str, fd: int) -> None:
        self.name = name
        self._fd: int | None = fd

    @classmethod
    def open(cls, mount: str, pattern: str, now: float) -> DumpFile | None:
        """The dump for a source that starts at ``now``, or None (logged) if it cannot be."""
        name = dump_file_name(pattern, now)
        try:
            fd = os.open(name, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        except OSError as exc:
            log.warning("%s: cannot open dump file %r for appending: %s, disabling",
                        mount, name, exc.strerror)
            return None
        return cls(name, fd)

    @property
    def active(self) -> bool:
        return self._fd is not None

    def write(self, mount: str, data: bytes) -> None:
        """Append ``data``; a failure closes the dump with one log line."""
        if self._fd is None:
            return
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as exc:
            log.warning("%s: write to dump file %r failed: %s, disabling", mount, self.name,
                        exc.strerror)
            self.close()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def intro_path(webroot: str, intro: str) -> str:
    """Where 2.4.4 looks for ``<intro>``: the name appended to the webroot."""
    return os.path.join(webroot, intro.lstrip("/"))


def load_intro(mount: str, webroot: str | None, intro: str, content_type: str | None) -> bytes | None:
    """The intro for a source of ``content_type`` starting on ``mount``, or None (with one
    log line) when there is no webroot, the file cannot be read, is larger than
    MAX_INTRO_BYTES, or is not in the mount's format."""
    if webroot is None:
        log.warning("%s: <intro> %s needs <paths><webroot>: no intro", mount, intro)
        return None
    path = intro_path(webroot, intro)
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_INTRO_BYTES + 1)
    except OSError as exc:
        log.warning("%s: cannot open intro file %r: %s", mount, path, exc.strerror)
        return None
    if len(data) > MAX_INTRO_BYTES:
        log.warning("%s: intro file %r is over %d bytes: no intro", mount, path, MAX_INTRO_BYTES)
        return None
    problem = intro_mismatch(data, content_type)
    if problem is not None:
        log.warning("%s: intro file %r not sent: %s", mount, path, problem)
        return None
    return data


class PlaylistLog:
    """``<logdir>/<playlistlog>``: ``add`` one line per title change."""

    def __init__(self, path: str, rotation: Rotation = Rotation()) -> None:
        self.path = path
        self.rotation = rotation
        self._failing = False  # said once until a line gets written again

    @classmethod
    def of(cls, config: Config) -> PlaylistLog | None:
        """The playlist log ``config`` asks for, or None (none asked for; or no
        ``<logdir>`` to put it in, said in one line)."""
        name, logdir = config.logging.playlistlog, config.paths.logdir
        if name is None:
            return None
        if logdir is None:
            log.warning("<playlistlog> %s needs <paths><logdir>: titles are not logged", name)
            return None
        return cls(os.path.join(logdir, name),
                   Rotation.of(config.logging.logsize, config.logging.logarchive))

    def add(self, mount: str, listeners: int, title: str, now: float) -> None:
        line = (playlist_line(now, mount, listeners, title) + "\n").encode("utf-8")
        try:
            fd = self._open()
            if os.fstat(fd).st_size > self.rotation.max_bytes:  # one writer: the supervisor
                os.close(fd)
                os.rename(self.path, self.rotation.rotated_name(self.path, now))
                fd = self._open()
            try:
                os.write(fd, line)  # one write with O_APPEND: whole lines, never interleaved
            finally:
                os.close(fd)
        except OSError as exc:
            if not self._failing:
                log.warning("cannot write the playlist log %s: %s", self.path, exc.strerror)
            self._failing = True
            return
        self._failing = False

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
