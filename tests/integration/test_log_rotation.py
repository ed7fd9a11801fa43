"""<logging><logsize>/<logarchive> through a real fanout: access.log grown past logsize by
requests is renamed once (to access.log.old, or access.log.<YYYYmmdd_HHMMSS> with
<logarchive>1, as 2.4.4 names it) and the lines go on in a new access.log, none lost.

One worker, so that which process writes each line is known: how several processes
share a rotation is tested in tests/unit/test_log_rotation.py."""
from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest

from tests.support.clients import read_head
from tests.support.server import icecast_xml, start_fanout
from tests.support.waiting import wait_for

LOGSIZE_KIB = 1
MAX_REQUESTS = 100  # an access line is ~100 bytes: 1 KiB is passed long before this
TIMEOUT = 10


def rotated(logdir: Path) -> list[Path]:
    return sorted(p for p in logdir.iterdir() if p.name.startswith("access.log."))


def request(server, target: str) -> None:
    with socket.create_connection((server.host, server.port), TIMEOUT) as sock:
        sock.sendall(f"GET {target} HTTP/1.0\r\n\r\n".encode())
        assert read_head(sock)[0].startswith(b"HTTP/1.0 200 OK\r\n")


def logged(logdir: Path, target: str) -> list[str]:
    """The names of the access log files holding the line of `target`."""
    marker = f'"GET {target} HTTP/1.0"'
    return [p.name for p in logdir.iterdir()
            if p.name.startswith("access.log") and marker in text_of(p)]


def text_of(path: Path) -> str:
    """`path`'s text; "" if it was renamed away since the directory was listed (the server
    may rotate access.log between the two: the caller's condition is simply looked at
    again)."""
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


@pytest.mark.parametrize("archive", [False, True])
def test_access_log_past_logsize_is_rotated_once_and_goes_on(tmp_path, archive):
    logdir = tmp_path / "logs"
    logdir.mkdir()
    server = start_fanout(icecast_xml(extra=f"""<paths><logdir>{logdir}</logdir></paths>
        <logging><logsize>{LOGSIZE_KIB}</logsize><logarchive>{int(archive)}</logarchive></logging>"""),
        tmp_path, workers=1)
    try:
        sent = 0
        while not rotated(logdir):
            assert sent < MAX_REQUESTS, "access.log was never rotated"
            request(server, f"/health?n={sent}")
            wait_for(lambda: logged(logdir, f"/health?n={sent}"), TIMEOUT, f"line {sent}")
            sent += 1
        started = time.time()
        [old] = rotated(logdir)
        if archive:
            stamp = re.fullmatch(r"access\.log\.(\d{8}_\d{6})", old.name)
            assert stamp, old.name
            assert abs(time.mktime(time.strptime(stamp.group(1), "%Y%m%d_%H%M%S")) - started) < 60
        else:
            assert old.name == "access.log.old"
        # The line that found the file past logsize started the new one; the old one
        # passed logsize by less than a line.
        assert logged(logdir, f"/health?n={sent - 1}") == ["access.log"]
        assert logged(logdir, f"/health?n={sent - 2}") == [old.name]
        assert LOGSIZE_KIB * 1024 < old.stat().st_size < LOGSIZE_KIB * 1024 + 200
        request(server, "/health?after=1")
        wait_for(lambda: logged(logdir, "/health?after=1"), TIMEOUT, "the line after")
        assert logged(logdir, "/health?after=1") == ["access.log"]
        assert rotated(logdir) == [old]  # rotated once
        for n in range(sent):  # every line in exactly one of the two files
            assert len(logged(logdir, f"/health?n={n}")) == 1
    finally:
        assert server.stop() == 0, server.output()
