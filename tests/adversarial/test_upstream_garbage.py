"""A relay upstream that answers garbage, never answers, or sends an endless head (issue 9).

One hostile upstream (tests/support/hostile.py) serves a `<relay>` per misbehaviour and
the test pattern on /live. Each broken pull fails and retries with backoff, saying why
once however often it retries; its mount stays down (404); the relay of /live and a
Bystander on the slave's own mount keep a byte-exact stream.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from fanout.protocol.upstream import MAX_HEAD
from fanout.httpclient import HEAD_DEADLINE
from tests.adversarial.test_master import GARBAGE, error_log, health, warnings
from tests.support.bystander import Bystander
from tests.support.clients import Listener
from tests.support.hostile import (AUDIO_HEAD, HostileServer, RelayListeners, answer, endless,
                                   path_of, silent, stream_pattern, trickle)
from tests.support.server import FanoutProcess, icecast_xml, start_fanout
from tests.support.waiting import wait_for


@dataclass(frozen=True)
class BadUpstream:
    mount: str
    serve: Callable[[socket.socket, HostileServer], None]
    why: str  # the log line, after "relay <mount> from <url>: "
    attempts: int  # requests to wait for (the first failed, then the pull retried)


BAD = [
    BadUpstream("/garbage", lambda conn, server: answer(conn, GARBAGE + b"\r\n\r\n"),
                f"bad upstream status line {GARBAGE.decode('latin-1')!r}", 3),
    BadUpstream("/endless-head", lambda conn, server: endless(
        conn, b"HTTP/1.0 200 OK\r\n", b"X-Junk: " + b"a" * 1000 + b"\r\n", server.stopping),
                f"upstream response head longer than {MAX_HEAD} bytes", 3),
    BadUpstream("/silent", lambda conn, server: silent(conn), "timed out", 2),
    BadUpstream("/slow-loris", lambda conn, server: trickle(conn, AUDIO_HEAD, server.stopping),
                f"no response head in {HEAD_DEADLINE:g}s", 2),
]


def serve(conn: socket.socket, line: str, server: HostileServer) -> None:
    bad = next((b for b in BAD if path_of(line) == b.mount), None)
    if bad is not None:
        bad.serve(conn, server)
    else:
        stream_pattern(conn, AUDIO_HEAD, server.stopping)


@dataclass
class World:
    upstream: HostileServer
    slave: FanoutProcess
    logdir: Path
    relayed: RelayListeners
    bystander: Bystander


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile-upstream")
    upstream = HostileServer(lambda conn, line: serve(conn, line, upstream))
    relays = "".join(f"<relay><server>{upstream.host}</server><port>{upstream.port}</port>"
                     f"<mount>{mount}</mount></relay>"
                     for mount in ["/live", *(bad.mount for bad in BAD)])
    slave = start_fanout(icecast_xml(extra=f"<paths><logdir>{tmp}</logdir></paths>{relays}"), tmp)
    try:
        wait_for(lambda: health(slave) == 1, 10, "/live relayed")
        with RelayListeners(slave, "/live") as relayed, Bystander(slave) as bystander:
            yield World(upstream, slave, tmp, relayed, bystander)
    finally:
        slave.stop()
        upstream.close()
        print(f"--- slave output ---\n{slave.output()}")


@pytest.mark.parametrize("bad", BAD, ids=[b.mount for b in BAD])
def test_a_broken_upstream_is_retried_and_said_once(world, bad):
    wait_for(lambda: world.upstream.served(f"GET {bad.mount} ") >= bad.attempts,
             bad.attempts * (HEAD_DEADLINE + 5), f"{bad.attempts} attempts on {bad.mount}")
    url = f"http://{world.upstream.host}:{world.upstream.port}{bad.mount}"
    told = [line for line in warnings(error_log(world.logdir))
            if line.startswith(f"relay {bad.mount} ")]
    assert told == [f"relay {bad.mount} from {url}: {bad.why}"]
    probe = Listener(world.slave.host, world.slave.port, bad.mount).start()
    probe.close()
    assert probe.head.startswith(b"HTTP/1.0 404")
    assert world.slave.proc.poll() is None
    assert health(world.slave) == 2  # /live (relayed) and /bystander
    world.relayed.assert_untouched()
    world.bystander.assert_untouched()
