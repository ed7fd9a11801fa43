"""A broken or hostile master never takes the slave down (issue 9).

The master here is a small real HTTP server inside the test (tests/support/hostile.py),
answering the slave's stream-list polls with crafted bytes; its other paths stream the
test pattern, so the mount it lists (/live) is relayed by the real fanout slave. Every
broken answer must cost one log line per poll and change nothing: the relay listeners of
/live and a Bystander on the slave's own mount keep a byte-exact stream. A huge list
(test_master_huge_list.py) costs bounded memory and work.

Log lines are read from error.log, which every process appends to line by line: a line
logged before the master saw a request is in the file by then.
"""
from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from fanout.protocol.streamlist import MAX_LINES, SKIP_EXAMPLES
from fanout.protocol.upstream import MAX_HEAD
from fanout.httpclient import FETCH_DEADLINE, MAX_BODY
from tests.support.admin import get
from tests.support.bystander import Bystander
from tests.support.hostile import (AUDIO_HEAD, HostileServer, RelayListeners, answer, endless,
                                   path_of, silent, stream_pattern, trickle)
from tests.support.server import RELAY_PASSWORD, FanoutProcess, icecast_xml, start_fanout
from tests.support.waiting import wait_for

INTERVAL = 1  # <master-update-interval>: seconds between two polls
LIST_HEAD = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
GOOD_LIST = LIST_HEAD + b"/live\r\n"
POLL = "GET /admin/streamlist.txt"


class HostileMaster:
    """Answers stream-list polls with `on_poll(conn)`; /admin/streams with 400 (a 2.4.4
    master, so the slave asks for streamlist.txt); streams the pattern on any other path."""

    def __init__(self, listing: bytes = GOOD_LIST) -> None:
        self.on_poll: Callable[[socket.socket], None] = lambda conn: answer(conn, listing)
        self.server = HostileServer(self.handle)
        self.address = f"127.0.0.1:{self.server.port}"

    def handle(self, conn: socket.socket, line: str) -> None:
        path = path_of(line)
        if path.startswith("/admin/streams"):
            answer(conn, b"HTTP/1.0 400 Bad Request\r\n\r\n")
        elif path.startswith("/admin/streamlist.txt"):
            self.on_poll(conn)
        else:
            stream_pattern(conn, AUDIO_HEAD, self.server.stopping)

    def polls(self) -> int:
        return self.server.served(POLL)

    def close(self) -> None:
        self.server.close()


def slave_xml(master: HostileMaster, logdir: Path, on_demand: bool = False,
              sources: int = 8) -> str:
    host, port = master.address.split(":")
    return icecast_xml(sources=sources, extra=f"""
  <paths><logdir>{logdir}</logdir></paths>
  <master-server>{host}</master-server>
  <master-server-port>{port}</master-server-port>
  <master-password>{RELAY_PASSWORD}</master-password>
  <master-update-interval>{INTERVAL}</master-update-interval>
  <relays-on-demand>{int(on_demand)}</relays-on-demand>""")


def error_log(logdir: Path) -> list[str]:
    path = logdir / "error.log"
    return path.read_text(errors="replace").splitlines() if path.exists() else []


def health(server: FanoutProcess) -> int:
    """Mounts live on the worker that answered /health."""
    return json.loads(get(server, "/health", authorization=None).body)["mounts"]


@dataclass
class World:
    master: HostileMaster
    slave: FanoutProcess
    logdir: Path
    relayed: RelayListeners
    bystander: Bystander

    def log_since(self, mark: int) -> list[str]:
        return error_log(self.logdir)[mark:]

    def settle(self) -> None:
        """Answer polls well again and wait for one that began after that: every line
        logged by earlier polls is in error.log then."""
        self.master.on_poll = lambda conn: answer(conn, GOOD_LIST)
        polls = self.master.polls()
        wait_for(lambda: self.master.polls() > polls, FETCH_DEADLINE + 5, "a good poll")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile-master")
    master = HostileMaster()
    slave = start_fanout(slave_xml(master, tmp), tmp)
    try:
        wait_for(lambda: health(slave) == 1, 10, "/live relayed from the master")
        with RelayListeners(slave, "/live") as relayed, Bystander(slave) as bystander:
            yield World(master, slave, tmp, relayed, bystander)
    finally:
        slave.stop()
        master.close()
        print(f"--- slave output ---\n{slave.output()}")


def warnings(lines: list[str]) -> list[str]:
    """The WARNING and ERROR lines, without their time stamp and origin."""
    return [line.split(": ", 1)[1] for line in lines if " WARNING " in line or " ERROR " in line]


# -- broken answers: one log line per poll, nothing else changes -------------------------------

@dataclass(frozen=True)
class Broken:
    name: str
    on_poll: Callable[[socket.socket, threading.Event], None]
    why: str  # the log line, after "master <address>"


def stall(conn: socket.socket, data: bytes) -> None:
    """Send `data`, then nothing more while keeping the connection open."""
    answer(conn, data)
    silent(conn)


GARBAGE = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\xe3"
BROKEN = [
    Broken("garbage", lambda conn, stop: answer(conn, GARBAGE + b"\r\n\r\n/live\r\n"),
           f": stream list poll failed: bad upstream status line {GARBAGE.decode('latin-1')!r}"),
    Broken("endless body", lambda conn, stop: endless(conn, GOOD_LIST, b"/more\r\n" * 1024, stop),
           f": stream list poll failed: body longer than {MAX_BODY} bytes"),
    Broken("body cut short", lambda conn, stop: answer(
        conn, b"HTTP/1.0 200 OK\r\nContent-Length: 100\r\n\r\n/live\r\n/b"),
           ": stream list poll failed: body ended after 9 of its 100 bytes"),
    Broken("body stops mid-way", lambda conn, stop: stall(conn, GOOD_LIST + b"/oth"),
           ": stream list poll failed: timed out"),
    Broken("http error", lambda conn, stop: answer(conn, b"HTTP/1.0 500 Internal Server Error\r\n\r\n"),
           " rejected the stream list request (500 Internal Server Error)"),
    Broken("huge head", lambda conn, stop: endless(conn, b"HTTP/1.0 200 OK\r\n",
                                                   b"X-Junk: " + b"a" * 1000 + b"\r\n", stop),
           f": stream list poll failed: upstream response head longer than {MAX_HEAD} bytes"),
    Broken("slow loris", lambda conn, stop: trickle(conn, GOOD_LIST, stop, pause=1.0),
           f": stream list poll failed: no complete answer in {FETCH_DEADLINE:g}s"),
    Broken("closes at once", lambda conn, stop: None,
           ": stream list poll failed: connection closed before the response head ended"),
]


@pytest.mark.parametrize("broken", BROKEN, ids=[b.name for b in BROKEN])
def test_a_broken_master_answer_costs_one_log_line_and_keeps_the_relays(world, broken):
    mark = len(error_log(world.logdir))
    stopping = world.master.server.stopping
    world.master.on_poll = lambda conn: broken.on_poll(conn, stopping)
    expected = f"master {world.master.address}{broken.why}"
    wait_for(lambda: expected in warnings(world.log_since(mark)), FETCH_DEADLINE + 5,
             f"the {broken.name} poll to fail")
    world.settle()
    lines = world.log_since(mark)
    assert world.slave.proc.poll() is None
    assert set(warnings(lines)) == {expected}, lines  # only that line, once per failed poll
    assert not any("Traceback" in line for line in lines)
    assert health(world.slave) == 2  # /live (relayed) and /bystander
    world.relayed.assert_untouched()  # the relay was never restarted: one pattern slice
    world.bystander.assert_untouched()


def test_500000_malformed_lines_cost_one_summary_per_poll(world):
    mark = len(error_log(world.logdir))
    junk = GOOD_LIST + b"junk\n" * 500_000
    polls = world.master.polls()
    world.master.on_poll = lambda conn: answer(conn, junk)
    wait_for(lambda: world.master.polls() >= polls + 3, 20, "three polls of the junk list")
    world.settle()
    told = warnings(world.log_since(mark))
    reasons = "; ".join(f"line {n}: does not start with '/': 'junk'"
                        for n in range(2, 2 + SKIP_EXAMPLES))
    summary = (f"master {world.master.address}: {MAX_LINES - 1} stream list line(s) skipped "
               f"({reasons}; …)")
    limit = f"master {world.master.address} lists more than {MAX_LINES} lines (only those are read)"
    print(f"\nmeasured: {len(told)} warning lines for {world.master.polls() - polls} polls")
    assert told.count(limit) == 1
    assert 3 <= told.count(summary) <= world.master.polls() - polls
    assert set(told) == {summary, limit}
    assert health(world.slave) == 2
    world.relayed.assert_untouched()
    world.bystander.assert_untouched()
