"""fanout.logs: one line per record, never a flood, no open() or raise on the hot path.

The pure parts (`CauseLimiter`, `LineFormatter`) are tested in this process; what depends
on process-wide state (the root logger, the file-descriptor limit, the gevent timer that
writes summaries) runs in a child `python` so this test process is left as it was.
"""
from __future__ import annotations

import ast
import logging
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fanout.logs import (
    CAUSE_WINDOW, CONTINUATION, MAX_CAUSES, MAX_LINES_PER_CAUSE, CauseLimiter, LineFormatter,
    LogFile, Suppressed, line_formatter,
)

ROOT = Path(__file__).resolve().parents[2]


def run_child(script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run `script` in a fresh interpreter in `tmp_path` with fanout importable."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=tmp_path,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=60)


def record(message: str, *args: object, name: str = "fanout.test",
           exc_info: object = None) -> logging.LogRecord:
    return logging.LogRecord(name, logging.WARNING, __file__, 1, message, args, exc_info)


# -- CauseLimiter ------------------------------------------------------------------------


def test_a_cause_gets_its_bound_of_lines_per_window_and_the_rest_is_counted():
    limiter = CauseLimiter()
    verdicts = [limiter.admit("bad line", 100.0 + i / 1000, i) for i in range(500)]
    assert verdicts == [True] * MAX_LINES_PER_CAUSE + [False] * (500 - MAX_LINES_PER_CAUSE)
    assert limiter.due(100.0 + CAUSE_WINDOW / 2) == []  # the window is not over yet
    assert limiter.due(100.0 + CAUSE_WINDOW) == [
        Suppressed("bad line", 500 - MAX_LINES_PER_CAUSE, 499)]
    assert limiter.due(200.0) == []  # each summary is given once


def test_a_first_occurrence_of_another_cause_is_never_silenced():
    limiter = CauseLimiter()
    for i in range(1000):
        limiter.admit("flood", 5.0, i)
    assert limiter.admit("something else", 5.0)


def test_a_new_window_lets_the_cause_through_again_and_reports_the_old_one():
    limiter = CauseLimiter(lines=2, window=1.0)
    assert [limiter.admit("c", 0.0, n) for n in range(3)] == [True, True, False]
    assert limiter.admit("c", 1.0, 3)  # a new window; the old one's summary is due
    assert limiter.due(1.0) == [Suppressed("c", 1, 2)]


def test_next_due_is_the_end_of_the_first_window_with_suppressed_lines():
    limiter = CauseLimiter(lines=1, window=1.0)
    limiter.admit("quiet", 0.0)
    assert limiter.next_due() is None
    limiter.admit("loud", 0.5)
    limiter.admit("loud", 0.6)
    assert limiter.next_due() == 1.5
    limiter.due(1.5)
    assert limiter.next_due() is None


def test_the_cause_table_is_bounded_and_extra_causes_pass_untracked():
    limiter = CauseLimiter(lines=1, window=1.0)
    assert all(limiter.admit(n, 0.0) for n in range(MAX_CAUSES + 100))
    assert all(limiter.admit(MAX_CAUSES + 1, 0.0) for _ in range(5))  # untracked: never held
    assert len(limiter._windows) == MAX_CAUSES
    limiter.due(1.0)  # ended windows are forgotten
    assert limiter._windows == {}


# -- one record, one line ----------------------------------------------------------------


def test_a_message_with_line_breaks_stays_one_escaped_line():
    line = line_formatter("worker0").format(
        record("%s: metadata on %s: %s", "1.2.3.4", "/x", "a\r\n[2026-01-01 00:00:00] ERROR x"))
    assert line.endswith("WARNING worker0 fanout.test: 1.2.3.4: metadata on /x: "
                         "a\\x0d\\x0a[2026-01-01 00:00:00] ERROR x")
    assert "\n" not in line and "\r" not in line


def test_non_utf8_bytes_in_a_message_are_hex_escapes():
    line = LineFormatter("%(message)s").format(record("source on %s", "/\udcff\udcfd.mp3"))
    assert line == "source on /\\xff\\xfd.mp3"


def test_a_traceback_follows_on_indented_escaped_lines():
    try:
        raise ValueError("bad\n[2026-01-01 00:00:00] ERROR forged\r")
    except ValueError:
        exc_info = sys.exc_info()
    lines = LineFormatter("%(message)s").format(record("internal error", exc_info=exc_info)).split("\n")
    assert lines[0] == "internal error"
    assert lines[1] == CONTINUATION + "Traceback (most recent call last):"
    assert all(line.startswith(CONTINUATION) for line in lines[1:])
    assert lines[-2:] == [CONTINUATION + "ValueError: bad",
                          CONTINUATION + "[2026-01-01 00:00:00] ERROR forged\\x0d"]


def test_no_log_call_in_fanout_formats_its_own_message():
    """A cause is a logger and a message template: a message built before the call (an
    f-string, `%`, `+`, `.format`) would make every message its own cause and escape the
    flood bound. A template passed on by name (a logging helper) is fine."""
    offenders = []
    for path in sorted((ROOT / "fanout").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "log"
                    and node.func.attr in {"debug", "info", "warning", "error", "exception",
                                           "critical"}
                    and node.args and isinstance(node.args[0], (ast.JoinedStr, ast.BinOp,
                                                                ast.Call))):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


# -- files --------------------------------------------------------------------------------


def test_a_log_file_is_opened_once_and_written_one_line_per_write(tmp_path):
    handler = LogFile(str(tmp_path / "error.log"), fallback_to_stderr=False)
    handler.setFormatter(LineFormatter("%(message)s"))
    try:
        fd = handler.fd
        for n in range(3):
            handler.emit(record("line %d", n))
        assert handler.fd == fd
        assert (tmp_path / "error.log").read_text() == "line 0\nline 1\nline 2\n"
    finally:
        handler.close()


def test_reopen_writes_to_the_new_file_after_rotation(tmp_path):
    handler = LogFile(str(tmp_path / "access.log"), fallback_to_stderr=True)
    handler.setFormatter(LineFormatter("%(message)s"))
    try:
        handler.emit(record("before"))
        (tmp_path / "access.log").rename(tmp_path / "access.log.1")
        handler.emit(record("still the old file"))
        handler.reopen()
        handler.emit(record("after"))
        assert (tmp_path / "access.log.1").read_text() == "before\nstill the old file\n"
        assert (tmp_path / "access.log").read_text() == "after\n"
    finally:
        handler.close()


def test_a_file_that_cannot_be_opened_is_said_once_and_access_lines_go_to_stderr(tmp_path):
    child = run_child(f"""
        import logging
        from fanout.logs import LineFormatter, LogFile
        handler = LogFile({str(tmp_path / "missing-dir" / "access.log")!r}, fallback_to_stderr=True)
        handler.setFormatter(LineFormatter("%(message)s"))
        for n in range(3):
            handler.emit(logging.LogRecord("fanout.access", 20, "", 1, "line %d", (n,), None))
        handler.reopen()
        """, tmp_path)
    assert child.returncode == 0, child.stderr
    assert child.stderr.splitlines() == [
        f"fanout: cannot open {tmp_path}/missing-dir/access.log: No such file or directory "
        "(errno 2); logging to stderr", "line 0", "line 1", "line 2"]


def test_a_failing_write_never_raises_and_is_said_once(tmp_path):
    child = run_child(f"""
        import logging, os
        from fanout.logs import LineFormatter, LogFile
        handler = LogFile({str(tmp_path / "error.log")!r}, fallback_to_stderr=False)
        handler.setFormatter(LineFormatter("%(message)s"))
        handler.fd = os.open("/dev/full", os.O_WRONLY)  # every write: ENOSPC
        for n in range(5):
            handler.emit(logging.LogRecord("fanout.x", 30, "", 1, "line %d", (n,), None))
        print("caller went on")
        """, tmp_path)
    assert child.returncode == 0, child.stderr
    assert child.stdout == "caller went on\n"
    assert child.stderr.splitlines() == [
        f"fanout: cannot write to {tmp_path}/error.log: No space left on device (errno 28); "
        "lines are lost until it works again"]


def test_logging_opens_no_file_when_no_descriptor_is_left(tmp_path):
    """The EMFILE that killed a pump: with every descriptor in use, lines still reach the
    files opened at configuration; a SIGUSR1 reopen says once why it cannot and goes on."""
    child = run_child(f"""
        import logging, os, resource
        from fanout import logs
        logs.setup("worker0")
        logs.configure_files({str(tmp_path)!r}, "error.log", "access.log", 3, "worker0")
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        held = []
        try:
            while True:
                held.append(os.open("/dev/null", os.O_RDONLY))
        except OSError as exc:
            assert exc.errno == 24, exc
        log = logging.getLogger("fanout.pump")
        log.info("%s: %d listeners", "/live", 400)
        logs.access("127.0.0.1 - - GET /live")
        logs.reopen_files()
        logs.reopen_files()
        log.info("%s: still logging", "/live")
        logs.access("127.0.0.1 - - GET /live again")
        """, tmp_path)
    assert child.returncode == 0, child.stderr
    errors = (tmp_path / "error.log").read_text().splitlines()
    assert [line.split(": ", 1)[1] for line in errors] == ["/live: 400 listeners",
                                                          "/live: still logging"]
    assert (tmp_path / "access.log").read_text() == (
        "127.0.0.1 - - GET /live\n127.0.0.1 - - GET /live again\n")
    notes = [line for line in child.stderr.splitlines() if line.startswith("fanout: ")]
    assert notes == [
        f"fanout: cannot open {tmp_path}/error.log: Too many open files (errno 24); "
        "logging to the file opened before",
        f"fanout: cannot open {tmp_path}/access.log: Too many open files (errno 24); "
        "logging to the file opened before"]


def test_a_flood_of_one_cause_is_bounded_and_every_line_accounted_for(tmp_path):
    """20,000 warnings of one cause in a gevent process: at most the bound per window
    reach error.log, and the summaries the timer writes account for every other one."""
    child = run_child(f"""
        import logging, time, gevent
        from fanout import logs
        logs.setup("worker0")
        logs.configure_files({str(tmp_path)!r}, "error.log", "access.log", 3, "worker0")
        log = logging.getLogger("fanout.relay.poller")
        started = time.monotonic()
        for n in range(20000):
            log.warning("master %s: stream list line %d skipped", "m:8000", n)
        print(time.monotonic() - started)  # how many windows the flood spanned
        log.info("%s", "another cause gets through")
        gevent.sleep({CAUSE_WINDOW} * 1.5)  # the summary timer fires within the hub
        log.info("%s", "after the summary")
        """, tmp_path)
    assert child.returncode == 0, child.stderr
    lines = (tmp_path / "error.log").read_text().splitlines()
    shown = [line for line in lines if "stream list line" in line and "suppressed" not in line]
    summaries = [line for line in lines if "similar messages suppressed" in line]
    # The bound holds per window: one or two on a quiet machine, more only if the loop was
    # slowed down that much (the child says how long it took).
    windows = math.ceil(float(child.stdout) / CAUSE_WINDOW) + 1
    assert MAX_LINES_PER_CAUSE <= len(shown) <= windows * MAX_LINES_PER_CAUSE
    suppressed = [int(line.split(": ", 1)[1].split()[0]) for line in summaries]
    assert len(shown) + sum(suppressed) == 20000
    assert summaries[-1].endswith("similar messages suppressed; the last: "
                                  "master m:8000: stream list line 19999 skipped")
    assert " WARNING worker0 fanout.relay.poller: " in summaries[-1]
    assert lines.index(summaries[-1]) < lines.index(next(l for l in lines if "after the" in l))
    assert any(line.endswith("another cause gets through") for line in lines)
    assert child.stderr.count("\n") == len(lines)  # stderr had the same lines, no more
