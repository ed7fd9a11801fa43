"""A master listing 100,000 mounts never freezes the slave (issue 9): the slave relays the
first MAX_RELAYED_MOUNTS mounts, says so once, keeps answering status requests while it
starts them, and its supervisor's memory stays bounded.

The hostile master and the slave's config are test_master.py's; this test has a file of
its own (and its own slave) so that xdist runs it beside that file's broken answers.
"""
from __future__ import annotations

import json
import socket
import threading
import time

import psutil

from fanout.protocol.streamlist import MAX_LINES
from fanout.relay.poller import MAX_RELAYED_MOUNTS
from tests.adversarial.test_master import LIST_HEAD, HostileMaster, error_log, slave_xml, warnings
from tests.support.admin import ADMIN, get
from tests.support.hostile import answer
from tests.support.server import FanoutProcess, start_fanout
from tests.support.waiting import wait_for

# The supervisor's memory bound asserted while a huge list is applied (measured: ~125 MB
# with MAX_RELAYED_MOUNTS idle on-demand relays; 1.2 GB before the bounds).
SUPERVISOR_RSS_BOUND = 200 * 1024 * 1024
# Seconds a status request may take while the huge list is applied (measured: < 2 s on a
# loaded 2-core machine; on main: 10 s and more).
PROMPT = 10.0


class Prober:
    """Asks /health, /status-json.xsl and /admin/stats in turn from a thread, noting each
    answer's status and time, the mounts /health counts and the supervisor's RSS."""

    PATHS = ("/health", "/status-json.xsl", "/admin/stats")

    def __init__(self, server: FanoutProcess) -> None:
        self.server = server
        self.supervisor = psutil.Process(server.proc.pid)
        self.answers: list[tuple[str, int | str, float]] = []
        self.counts: list[int] = []
        self.rss: list[int] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stopping.is_set():
            for path in self.PATHS:
                self.rss.append(self.supervisor.memory_info().rss)
                started = time.monotonic()
                try:
                    status: int | str = self.ask(path)
                except (OSError, ValueError) as exc:
                    status = repr(exc)
                self.answers.append((path, status, time.monotonic() - started))

    def ask(self, path: str) -> int:
        with socket.create_connection((self.server.host, self.server.port), timeout=PROMPT) as sock:
            auth = f"Authorization: {ADMIN}\r\n" if path.startswith("/admin") else ""
            sock.sendall(f"GET {path} HTTP/1.0\r\n{auth}\r\n".encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if path == "/health":
            self.counts.append(json.loads(body)["mounts"])
        return int(head.split(b" ", 2)[1])

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(3 * PROMPT)


def test_a_master_listing_100000_mounts_gets_its_first_mounts_relayed_without_a_freeze(tmp_path):
    master = HostileMaster(LIST_HEAD)  # an empty list until the slave is up and watched
    slave = start_fanout(slave_xml(master, tmp_path, on_demand=True, sources=200_000), tmp_path)
    try:
        wait_for(lambda: master.polls() >= 1, 10, "the first poll")
        prober = Prober(slave)
        huge = LIST_HEAD + b"".join(b"/m%06d\r\n" % n for n in range(100_000))
        master.on_poll = lambda conn: answer(conn, huge)
        wait_for(lambda: prober.counts and prober.counts[-1] == MAX_RELAYED_MOUNTS, 60,
                 f"{MAX_RELAYED_MOUNTS} relayed mounts")
        prober.stop()
        polls = master.polls()
        wait_for(lambda: master.polls() >= polls + 2, 10, "two more polls of the huge list")
        listed = {m.get("mount") for m in get(slave, "/admin/listmounts").xml()}
        assert listed == {f"/m{n:06d}" for n in range(MAX_RELAYED_MOUNTS)}
        told = warnings(error_log(tmp_path))
        assert told == [f"master {master.address} lists more than {MAX_LINES} lines (only those "
                        f"are read); {MAX_LINES} mounts (only the first {MAX_RELAYED_MOUNTS} are "
                        "relayed: the limit per master)"]
        slowest = max(seconds for _, _, seconds in prober.answers)
        print(f"\nmeasured: supervisor RSS at most {max(prober.rss) >> 20} MB, "
              f"{len(prober.answers)} status answers, slowest {slowest:.2f}s")
        assert {status for _, status, _ in prober.answers} == {200}, prober.answers
        assert any(0 < count < MAX_RELAYED_MOUNTS for count in prober.counts), prober.counts
        assert max(prober.rss) < SUPERVISOR_RSS_BOUND
        assert slave.proc.poll() is None
    finally:
        slave.stop()
        master.close()
