"""The command line as an operator mistypes it, and start-up on a machine that says no.

A bad argument or config is one line on stderr and exit status 2; a server that cannot
start (a port in use, a worker that cannot boot) says so in one line and exits 3. In
every case before any password of the built-in config is printed, and without a
traceback. Stopping, even while a worker is being replaced, prints no traceback either.
"""
from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest

from fanout.cli import parse_args
from fanout.supervisor import DEFAULT_TIMEOUT
from tests.support.server import icecast_xml
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m fanout ARGS` (or `python -c CODE ARGS`) from the repository root."""
    start = ["-c", code] if code else ["-m", "fanout"]
    return subprocess.run([sys.executable, *start, "--allow-root", *args], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)


def assert_one_line_and_no_password(result: subprocess.CompletedProcess[str], status: int,
                                    line: str) -> None:
    assert result.returncode == status, result
    errors = [l for l in result.stderr.splitlines() if l.startswith("fanout:")]
    assert errors == [line], result.stderr
    assert "password" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args, said", [
    (("--port", "70000"), "argument --port: '70000' is not a port number (0 to 65535)"),
    (("--port", "-1"), "argument --port: '-1' is not a port number (0 to 65535)"),
    (("--port", "http"), "argument --port: 'http' is not a port number (0 to 65535)"),
    (("--workers", "0"), "argument --workers: '0' is not a number of workers (1 to 64)"),
    (("--workers", "65"), "argument --workers: '65' is not a number of workers (1 to 64)"),
    (("--drain", "-1"), "argument --drain: '-1' is not a number of seconds (0 or more)"),
    (("--drain", "nan"), "argument --drain: 'nan' is not a number of seconds (0 or more)"),
    (("--timeout", "0"), "argument --timeout: '0' is not a number of seconds (> 0)"),
    (("--timeout", "inf"), "argument --timeout: 'inf' is not a number of seconds (> 0)"),
    (("--no-such-option",), "unrecognized arguments: --no-such-option"),
])
def test_a_bad_argument_is_one_line_and_status_2(args, said):
    result = run_cli(*args)
    assert_one_line_and_no_password(result, 2, f"fanout: error: {said} (see --help)")
    assert result.stdout == ""


def test_the_default_timeout_outlasts_a_worker_stopped_for_a_dozen_seconds():
    assert parse_args([]).timeout == DEFAULT_TIMEOUT == 30.0


def test_a_port_in_use_is_one_line_and_status_3_before_any_password():
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("--port", str(port), "--workers", "1")
    assert_one_line_and_no_password(
        result, 3, f"fanout: cannot listen on 0.0.0.0:{port}: Address already in use")


def test_an_unreadable_config_is_one_line_and_status_2(tmp_path):
    missing = tmp_path / "missing.xml"
    result = run_cli("-c", str(missing))
    assert_one_line_and_no_password(
        result, 2, f"fanout: config error: {missing}: 'No such file or directory' is not valid: "
                   "expected a readable file")
    result = run_cli("-c", str(tmp_path))
    assert_one_line_and_no_password(
        result, 2, f"fanout: config error: {tmp_path}: 'Is a directory' is not valid: "
                   "expected a readable file")


def test_a_logdir_that_is_a_file_is_one_line_and_status_2(tmp_path):
    logdir = tmp_path / "logs"
    logdir.write_text("not a directory")
    config = tmp_path / "icecast.xml"
    config.write_text(icecast_xml(extra=f"<paths><logdir>{logdir}</logdir></paths>"))
    result = run_cli("-c", str(config))
    assert_one_line_and_no_password(
        result, 2, f"fanout: config error: icecast/paths/logdir: '{logdir}' is not valid: "
                   "expected a writable directory")


def test_a_log_file_that_cannot_be_opened_is_one_line_and_status_2(tmp_path):
    (tmp_path / "error.log").mkdir()  # a directory where the error log should be
    config = tmp_path / "icecast.xml"
    config.write_text(icecast_xml(extra=f"<paths><logdir>{tmp_path}</logdir></paths>"))
    result = run_cli("-c", str(config))
    assert_one_line_and_no_password(
        result, 2, f"fanout: config error: icecast/paths/logdir: cannot open the log files in "
                   f"'{tmp_path}': Is a directory")


def test_a_worker_that_cannot_boot_is_status_3_before_any_password():
    code = ("import sys, fanout.supervisor as s; s.WORKER_MODULE = 'fanout.no_such_worker'; "
            "from fanout.cli import main; sys.exit(main(sys.argv[1:]))")
    result = run_cli("--port", "0", "--workers", "2", code=code)
    assert result.returncode == 3, result
    assert "password" not in result.stdout + result.stderr
    assert "before it booted; stopping the server" in result.stderr
    assert "Traceback" not in result.stderr


def test_stopping_while_a_worker_is_replaced_prints_no_traceback():
    proc = subprocess.Popen([sys.executable, "-m", "fanout", "--allow-root", "--port", "0", "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    lines: list[str] = []
    ended = threading.Event()

    def collect() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
        ended.set()  # every process writing to the pipe is gone

    threading.Thread(target=collect, daemon=True).start()
    try:
        wait_for(lambda: "".join(lines).count("booted (pid") == 2, 20, "two workers booted")
        children = psutil.Process(proc.pid).children()
        children[0].send_signal(signal.SIGKILL)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        wait_for(ended.is_set, 20, "the end of the server's output")
    finally:
        proc.kill()
    output = "".join(lines)
    assert "Traceback" not in output and "LoopExit" not in output, output
    # Nothing outlives the server: every worker that ever booted is gone.
    booted = [int(pid) for pid in re.findall(r"booted \(pid (\d+)\)", output)]
    assert booted and not any(psutil.pid_exists(pid) for pid in booted)
