"""Logging for the supervisor and the workers: stderr, error.log and access.log.

Theory of operation
-------------------
Every record at the configured level goes to stderr and, with a ``<paths><logdir>``, to
error.log; the ``fanout.access`` logger's Combined Log Format lines go to access.log only.
Several processes append to the same files: each line is one ``write`` on an O_APPEND
file descriptor, so lines never interleave. Three rules hold for every line:

1. **One record, one line.** ``LineFormatter`` escapes the message with
   ``text.log_safe`` (controls, line separators and bytes that are not UTF-8 become
   ``\\xNN``), and a traceback follows on lines indented by ``CONTINUATION``, each escaped
   the same way: a line at column 0 always starts a record, whatever a peer sent.
2. **Never a flood.** A cause is a logger and a message template (``log.warning("%s: %s",
   …)`` counts as one cause whatever its arguments). ``CauseLimiter`` lets
   ``MAX_LINES_PER_CAUSE`` lines of a cause through per ``CAUSE_WINDOW`` seconds; the
   rest are counted and summarised in one line when the window is over ("N similar
   messages suppressed; the last: …"), by the next record or a timer. A first occurrence
   always gets through. The bound is per process (each worker has its own limiter).
   access.log is not limited: every request gets its line.
3. **No open() and no raise on the hot path.** ``LogFile`` opens its file when the
   configuration names it and again only on ``reopen_files`` (SIGUSR1, after logrotate
   moved the files). An open that fails (EMFILE, EACCES) is said once on stderr and the
   lines go to stderr instead (or on to the file opened before, on a reopen); a write that
   fails is said once on stderr and never reaches the caller.
4. **Rotation by size, as 2.4.4** (``<logging><logsize>``, ``<logarchive>``: when and
   to what name, ``fanout.protocol.log_rotation``). The size is the file's end offset after our
   last line (one ``lseek``; with O_APPEND that counts every process's lines), so no
   open happens but on rotation. Several processes write each file: the one that
   renames holds an ``flock`` on the old file while it renames and opens the new one;
   another that finds its file no longer at the path only reopens it. A process may
   thus put one more line into the renamed file before it follows.
"""
from __future__ import annotations

import atexit
import fcntl
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Hashable

import gevent

from fanout.protocol.log_rotation import Rotation
from fanout.protocol.text import log_safe

# Icecast's loglevel 1..4 (error, warn, info, debug) mapped to Python levels.
LEVELS = {1: logging.ERROR, 2: logging.WARNING, 3: logging.INFO, 4: logging.DEBUG}
ACCESS_LOGGER = "fanout.access"

# Lines one cause may write per window: enough to see a problem's shape, far from a
# flood (500,000 bad stream-list lines were 133 MB of error.log in 20 s).
MAX_LINES_PER_CAUSE = 10
CAUSE_WINDOW = 1.0  # seconds
# Causes tracked at once; beyond that a record is let through untracked (a first
# occurrence is never silenced), and the table cannot grow without bound.
MAX_CAUSES = 1024
# Put before each traceback line, so that only a record's own line starts at column 0.
CONTINUATION = "  "
_LINE_FORMAT = "[%(asctime)s] %(levelname)s {role} %(name)s: %(message)s"
_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
_FILE_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
_FILE_MODE = 0o666  # less the umask, as logging.FileHandler creates them


def rotate_path(path: str, rotation: Rotation) -> None:
    """Rename the log file at `path` to its rotated name; raises OSError."""
    os.rename(path, rotation.rotated_name(path, time.time()))


# -- one line per record -----------------------------------------------------------------


class LineFormatter(logging.Formatter):
    """A formatter whose every record is one line, plus indented traceback lines."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = log_safe(record.getMessage())
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        extra = [record.exc_text or "", self.formatStack(record.stack_info) if record.stack_info else ""]
        return line + "".join(f"\n{CONTINUATION}{log_safe(text)}"
                              for part in extra if part for text in part.split("\n"))


def line_formatter(role: str) -> LineFormatter:
    """The error.log and stderr layout: time, level, process role, logger, message."""
    return LineFormatter(_LINE_FORMAT.format(role=role), _DATE_FORMAT)


# -- never a flood -----------------------------------------------------------------------


@dataclass(slots=True)
class _Window:
    start: float
    lines: int = 1
    suppressed: int = 0
    last: Any = None  # the last suppressed item


@dataclass(frozen=True, slots=True)
class Suppressed:
    """A window that ended with suppressed lines: its cause, how many, the last one."""

    cause: Hashable
    count: int
    last: Any


class CauseLimiter:
    """At most ``lines`` items per cause in any window of ``window`` seconds (pure: the
    caller passes ``now``, a monotonic clock).

    ``admit`` says whether an item goes through; ``due`` returns the windows that ended
    with items suppressed (each reported once); ``next_due`` is when the next one ends.
    """

    def __init__(self, lines: int = MAX_LINES_PER_CAUSE, window: float = CAUSE_WINDOW,
                 max_causes: int = MAX_CAUSES) -> None:
        self.lines, self.window, self.max_causes = lines, window, max_causes
        self._windows: dict[Hashable, _Window] = {}
        self._ended: list[Suppressed] = []
        self._next_scan = float("inf")  # no window ends before this

    def admit(self, cause: Hashable, now: float, item: Any = None) -> bool:
        """True if the item goes through; else it is counted for its window's summary."""
        window = self._windows.get(cause)
        if window is not None and now - window.start >= self.window:
            self._end(cause, window)
            window = None
        if window is None:
            if len(self._windows) < self.max_causes:
                self._windows[cause] = _Window(now)
                self._next_scan = min(self._next_scan, now + self.window)
            return True
        if window.lines < self.lines:
            window.lines += 1
            return True
        window.suppressed += 1
        window.last = item
        return False

    def due(self, now: float) -> list[Suppressed]:
        """The summaries of every window ended by ``now`` (forgotten once returned)."""
        if now >= self._next_scan:
            self._next_scan = float("inf")
            for cause, window in list(self._windows.items()):
                if now - window.start >= self.window:
                    self._end(cause, window)
                else:
                    self._next_scan = min(self._next_scan, window.start + self.window)
        ended, self._ended = self._ended, []
        return ended

    def next_due(self) -> float | None:
        """When the first window holding suppressed items ends; None if none does."""
        ends = [w.start + self.window for w in self._windows.values() if w.suppressed]
        if self._ended:  # ended already, not yet returned by `due`
            ends.append(float("-inf"))
        return min(ends, default=None)

    def _end(self, cause: Hashable, window: _Window) -> None:
        del self._windows[cause]
        if window.suppressed:
            self._ended.append(Suppressed(cause, window.suppressed, window.last))


_limiter = CauseLimiter()
_flush_at: float | None = None  # when the flush timer fires, if one is set


class LimitFilter(logging.Filter):
    """The handler filter applying the process's ``CauseLimiter``. The verdict is kept on
    the record, so a record going to stderr and error.log is counted once."""

    def filter(self, record: logging.LogRecord) -> bool:
        verdict = getattr(record, "fanout_admitted", None)
        if verdict is None:
            verdict = _admit(record)
            setattr(record, "fanout_admitted", verdict)
        return bool(verdict)


def _admit(record: logging.LogRecord) -> bool:
    now = time.monotonic()
    emit_summaries(now)  # older than this record: they go first
    cause = (record.name, record.msg if isinstance(record.msg, str) else type(record.msg).__name__)
    admitted = _limiter.admit(cause, now, record)
    if not admitted and _flush_at is None:
        _schedule_flush(now)
    return admitted


def emit_summaries(now: float) -> None:
    """Write one line for every cause whose window ended with lines suppressed."""
    for ended in _limiter.due(now):
        last: logging.LogRecord = ended.last
        summary = logging.LogRecord(last.name, last.levelno, last.pathname, last.lineno,
                                    "%d similar messages suppressed; the last: %s",
                                    (ended.count, _message_of(last)), None)
        setattr(summary, "fanout_admitted", True)
        logging.getLogger(last.name).handle(summary)


def _message_of(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # its arguments do not fit its template: say what we have
        return str(record.msg)


def _schedule_flush(now: float) -> None:
    global _flush_at
    due = _limiter.next_due()
    if due is None or (_flush_at is not None and _flush_at <= due):
        return
    _flush_at = due
    gevent.spawn_later(max(0.0, due - now), _flush)


def _flush() -> None:
    global _flush_at
    _flush_at = None
    now = time.monotonic()
    emit_summaries(now)
    if _limiter.next_due() is not None:
        _schedule_flush(now)


def _flush_at_exit() -> None:
    emit_summaries(float("inf"))  # every window is over when the process ends


# -- files: opened when configured, reopened on SIGUSR1, never on the hot path -----------

_noted: set[Hashable] = set()  # problems already said on stderr


def note(key: Hashable, message: str) -> None:
    """Say ``message`` on stderr once per ``key`` (until ``forget_note(key)``); never raises."""
    if key in _noted:
        return
    _noted.add(key)
    _write_stderr(f"fanout: {log_safe(message)}\n".encode("utf-8"))


def forget_note(key: Hashable) -> None:
    _noted.discard(key)


def _write_stderr(data: bytes) -> None:
    try:
        sys.stderr.flush()
        _write_all(sys.stderr.fileno(), data)
    except (OSError, ValueError):  # stderr closed or replaced by something without a fd
        pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class LogFile(logging.Handler):
    """One log file, by path. Opened here and by ``reopen`` only; one ``write`` per line.

    When it could never be opened, lines go to stderr if ``fallback_to_stderr`` (access.log)
    and nowhere else otherwise (error.log's lines are on stderr anyway)."""

    def __init__(self, path: str, fallback_to_stderr: bool, rotation: Rotation = Rotation()) -> None:
        super().__init__()
        self.path = path
        self.fallback_to_stderr = fallback_to_stderr
        self.rotation = rotation
        self.fd: int | None = None
        self.size = 0  # the file's size after our last line (rule 4)
        self.write_failed = False  # the last write failed (and was said on stderr)
        self.reopen()

    def reopen(self) -> None:
        """Open the path anew (logrotate moved the file); keep the old file if that fails."""
        try:
            fd = os.open(self.path, _FILE_FLAGS, _FILE_MODE)
        except OSError as exc:
            where = "the file opened before" if self.fd is not None else (
                "stderr" if self.fallback_to_stderr else "stderr only")
            note(("open", self.path), f"cannot open {self.path}: {exc.strerror} "
                                      f"(errno {exc.errno}); logging to {where}")
            return
        forget_note(("open", self.path))
        old, self.fd = self.fd, fd
        self.size = os.fstat(fd).st_size
        if old is not None:
            os.close(old)

    def rotate(self, old: int) -> None:
        """The file on `old` passed its size: rename it unless another process did, and
        continue in a new file by the name (rule 4 of the module doc)."""
        try:
            fcntl.flock(old, fcntl.LOCK_EX)  # the renamer holds it until the new file exists
            try:
                if self._is_at_path(old):
                    rotate_path(self.path, self.rotation)
                self.reopen()  # closes `old`, which lets the lock go
            finally:
                if self.fd == old:  # the reopen failed: `old` is still ours
                    fcntl.flock(old, fcntl.LOCK_UN)
        except OSError as exc:
            note(("rotate", self.path), f"cannot rotate {self.path}: {exc.strerror} "
                                        f"(errno {exc.errno}); writing on to it")
            self.size = 0  # try again after another max_bytes, not on every line

    def _is_at_path(self, fd: int) -> bool:
        """Whether the file open on `fd` is still the one at the path (not renamed)."""
        try:
            here, there = os.fstat(fd), os.stat(self.path)
        except FileNotFoundError:
            return False
        return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8", "backslashreplace")
        except Exception:
            self.handleError(record)
            return
        if self.fd is None:
            if self.fallback_to_stderr:
                _write_stderr(data)
            return
        if self.size > self.rotation.max_bytes:
            self.rotate(self.fd)
        try:
            _write_all(self.fd, data)
            self.size = os.lseek(self.fd, 0, os.SEEK_CUR)  # O_APPEND: the end of the file
        except OSError as exc:
            self.write_failed = True
            note(("write", self.path), f"cannot write to {self.path}: {exc.strerror} "
                                       f"(errno {exc.errno}); lines are lost until it works again")
            return
        if self.write_failed:  # it works again: a new failure is worth saying again
            self.write_failed = False
            forget_note(("write", self.path))

    def handleError(self, record: logging.LogRecord) -> None:
        note(("format", record.name, str(record.msg)), f"a {record.name} record could not be "
                                                        f"formatted: {record.msg!r}")

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        super().close()


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """stderr, whose failures are no one's business: they never reach the caller."""

    def handleError(self, record: logging.LogRecord) -> None:
        note(("stderr", record.name, str(record.msg)), "a log line could not be written "
                                                        f"to stderr: {record.msg!r}")


# -- set-up --------------------------------------------------------------------------------

_files: dict[str, LogFile] = {}  # "error" / "access" -> its open file
_limit_filter = LimitFilter()
_exit_flush_registered = False


def setup(role: str, loglevel: int = 3) -> None:
    """One line per event on stderr: time, level, process role, logger, message."""
    global _exit_flush_registered
    handler = StderrHandler(sys.stderr)
    handler.setFormatter(line_formatter(role))
    handler.addFilter(_limit_filter)
    root = logging.getLogger()
    root.handlers[:] = [handler, *(h for h in root.handlers if isinstance(h, LogFile))]
    root.setLevel(LEVELS.get(loglevel, logging.INFO))
    if not _exit_flush_registered:
        atexit.register(_flush_at_exit)
        _exit_flush_registered = True


def configure_files(logdir: str | None, errorlog: str, accesslog: str, loglevel: int,
                    role: str, rotation: Rotation = Rotation()) -> None:
    """Log to `logdir`/`errorlog` and `logdir`/`accesslog`; without a logdir, stderr only.

    Called with every configuration: a file whose path did not change stays open as it is
    (with the new `rotation`).
    """
    root, access = logging.getLogger(), logging.getLogger(ACCESS_LOGGER)
    root.setLevel(LEVELS.get(loglevel, logging.INFO))
    access.propagate = False  # access lines go to access.log only, never to stderr
    access.setLevel(logging.INFO)
    paths = {} if logdir is None else {"error": os.path.join(logdir, errorlog),
                                       "access": os.path.join(logdir, accesslog)}
    for kind in ("error", "access"):
        current = _files.get(kind)
        if current is not None and current.path == paths.get(kind):
            current.rotation = rotation
            continue
        owner = root if kind == "error" else access
        if current is not None:
            owner.removeHandler(current)
            current.close()
            del _files[kind]
        if kind in paths:
            _files[kind] = _open(kind, paths[kind], role, rotation)
            owner.addHandler(_files[kind])


def _open(kind: str, path: str, role: str, rotation: Rotation) -> LogFile:
    if kind == "access":
        handler = LogFile(path, fallback_to_stderr=True, rotation=rotation)
        handler.setFormatter(LineFormatter("%(message)s"))
        return handler
    handler = LogFile(path, fallback_to_stderr=False, rotation=rotation)
    handler.setFormatter(line_formatter(role))
    handler.addFilter(_limit_filter)
    return handler


def reopen_files() -> None:
    """Reopen every log file at its configured path (SIGUSR1, after logrotate)."""
    for handler in _files.values():
        handler.reopen()


def access(line: str) -> None:
    logging.getLogger(ACCESS_LOGGER).info("%s", line)
