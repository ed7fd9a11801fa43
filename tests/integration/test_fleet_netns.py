"""The fleet as one system (issue 12), on a LAN of network namespaces: a director master
(`<redirect-mode>always`) and three fanout slaves of different capacities share 300
listeners in proportion; a slave SIGKILLed mid-run gets no listener more than 2 s after
its death; the master's cluster totals are the sum of its slaves' listeners; an Icecast
2.4.4 slave still relays from that master."""
from __future__ import annotations

import json
import socket
import time
from collections import Counter
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

from tests.integration.test_redirect import get, head_line, kill_hard, redirecting_slave_xml
from tests.integration.test_relay import PacedSource, assert_pattern_flows, status_of, wait_status
from tests.support.clients import read_head
from tests.support.icecast import needs_icecast2, start_icecast2
from tests.support.netns import Lan, host_xml, needs_netns, start_fanout_in
from tests.support.server import RELAY_PASSWORD, FanoutProcess
from tests.support.waiting import wait_for

pytestmark = needs_netns

MOUNT = "/live"
PORT = 8000
# Listeners each slave offers its master (<master-redirect-capacity>): 1 : 2 : 3.
CAPACITIES = (100, 200, 300)
ARRIVALS = 300
# How far (share of the expected count) a slave's listeners may be from its share.
TOLERANCE = 0.10
# A dead slave must leave the rotation within this many seconds of its death (issue 12).
DEAD_WITHIN = 2.0
# Redirects are counted per BUCKET seconds after the death, for the report.
BUCKET = 0.1
# Arrivals go on this long after the death: well past DEAD_WITHIN, so a late redirect shows.
AFTER_DEATH = 3.0
# Seconds between two arrivals after the death (pacing the producer, not synchronisation).
ARRIVAL_GAP = 0.03
# The source's pace: 512 bytes every 0.1 s. Listeners here never read, so the slaves drop
# one only once it lags queue-size (512000) bytes: about 100 s, far beyond this test.
SOURCE_CHUNK, SOURCE_PACE = 512, 0.1


@dataclass
class Arrival:
    at: float  # monotonic time of the master's answer
    slave: str  # the host the master sent it to ("" if the master served it)
    sock: socket.socket | None  # its connection to the slave (None: refused there)


def arrive(master: FanoutProcess) -> Arrival:
    """One listener at the master, following its 302 to a slave and staying there."""
    with socket.create_connection((master.host, master.port), 5) as sock:
        sock.sendall(f"GET {MOUNT} HTTP/1.1\r\nHost: {master.host}\r\n\r\n".encode())
        head = read_head(sock)[0]
    at = time.monotonic()
    location = head_line(head, "location")
    if location is None:
        assert head.startswith(b"HTTP/1.0 200"), head[:80]
        return Arrival(at, "", None)
    url = urlsplit(location)
    assert url.hostname is not None and url.port is not None, location
    try:
        there = socket.create_connection((url.hostname, url.port), 5)
        there.sendall(f"GET {url.path}?{url.query} HTTP/1.1\r\nHost: {url.netloc}\r\n\r\n".encode())
        answer = read_head(there)[0]
    except OSError:
        # A slave that is gone, or dying: its socket may still take the connection and
        # then reset it.
        return Arrival(at, url.hostname, None)
    assert answer.startswith(b"HTTP/1.0 200"), (location, answer[:80])
    return Arrival(at, url.hostname, there)


def status_json(server) -> dict:
    return json.loads(get(server, "/status-json.xsl").partition(b"\r\n\r\n")[2])["icestats"]


def own_listeners(server: FanoutProcess) -> int:
    sources = status_json(server).get("source", [])
    for source in sources if isinstance(sources, list) else [sources]:
        if source["listenurl"].endswith(MOUNT):
            return int(source["listeners"])
    return 0


def cluster_listeners(master: FanoutProcess) -> tuple[int, int]:
    """(cluster listeners, cluster nodes) as the master reports them."""
    icestats = status_json(master)
    return icestats.get("cluster_listeners", -1), icestats.get("cluster_nodes", -1)


def reported_carriers(master: FanoutProcess) -> set[str]:
    """The slaves whose last load report to `master` lists MOUNT (its /metrics)."""
    metrics = get(master, "/metrics").partition(b"\r\n\r\n")[2].decode()
    return {line.split('node="', 1)[1].split(":", 1)[0] for line in metrics.splitlines()
            if line.startswith("fanout_cluster_listeners{") and f'mount="{MOUNT}"' in line}


def assert_cluster_is_the_sum(master: FanoutProcess, slaves: list[FanoutProcess]) -> None:
    def settled() -> bool:
        own = [own_listeners(slave) for slave in slaves]
        return cluster_listeners(master) == (sum(own), len(slaves) + 1)

    wait_for(settled, 10, "the master's cluster totals to equal the sum of its slaves'")


def redirects_per_bucket(arrivals: list[Arrival], slave: str, death: float) -> dict[int, int]:
    """Redirects to `slave` per BUCKET after `death` (bucket k: [k·BUCKET, (k+1)·BUCKET) s)."""
    return dict(sorted(Counter(int((a.at - death) // BUCKET) for a in arrivals
                               if a.slave == slave and a.at >= death).items()))


def icecast2_slave_of(master: FanoutProcess):
    return start_icecast2(extra=f"""
  <master-server>{master.host}</master-server>
  <master-server-port>{master.port}</master-server-port>
  <master-password>{RELAY_PASSWORD}</master-password>
  <master-update-interval>1</master-update-interval>""")


def test_a_director_shares_listeners_by_capacity_and_drops_a_dead_slave_in_time(tmp_path):
    with Lan(hosts=1 + len(CAPACITIES)) as lan:
        started: list[FanoutProcess] = []
        arrivals: list[Arrival] = []
        source = None
        try:
            master = start_fanout_in(lan[0], host_xml(
                lan[0], port=PORT, extra="<max-redirect-slaves>4</max-redirect-slaves>"
                                         "<redirect-mode>always</redirect-mode>"), tmp_path, workers=1)
            started.append(master)
            source = PacedSource(master, MOUNT, chunk=SOURCE_CHUNK, pace=SOURCE_PACE)
            for host, capacity in zip(lan.hosts[1:], CAPACITIES):
                config = redirecting_slave_xml(
                    master, address=host.address, port=PORT,
                    extra=f"<master-redirect-capacity>{capacity}</master-redirect-capacity>")
                started.append(start_fanout_in(host, config, tmp_path, workers=1))
            slaves = started[1:]
            for slave in slaves:
                wait_status(slave, MOUNT, 200, 15)
            # Every slave registered with its load, and wait_status's probes left.
            wait_for(lambda: cluster_listeners(master) == (0, 4), 15, "an empty cluster of 4")
            # ...and reported the mount among its own: a slave whose first report came
            # before its relay of the mount started is not chosen for it until its next
            # one, and on a loaded machine the crowd below was over by then.
            wait_for(lambda: reported_carriers(master) >= {h.address for h in lan.hosts[1:]},
                     15, "every slave to report carrying the mount")

            arrivals += [arrive(master) for _ in range(ARRIVALS)]
            sent = Counter(a.slave for a in arrivals)
            assert "" not in sent, "the director served a listener itself"
            total = sum(CAPACITIES)
            for host, slave, capacity in zip(lan.hosts[1:], slaves, CAPACITIES):
                expected = ARRIVALS * capacity / total
                assert abs(sent[host.address] - expected) <= TOLERANCE * expected, (sent, CAPACITIES)
            wait_for(lambda: [own_listeners(s) for s in slaves] == [sent[h.address] for h in lan.hosts[1:]],
                     10, "each slave to count the listeners sent to it")
            assert_cluster_is_the_sum(master, slaves)
            assert own_listeners(master) == 0  # the slaves' relay pulls are no listeners

            dead, victim = lan.hosts[3].address, slaves[2]
            death = time.monotonic()
            kill_hard(victim)
            while time.monotonic() < death + AFTER_DEATH:
                arrivals.append(arrive(master))
                time.sleep(ARRIVAL_GAP)
            buckets = redirects_per_bucket(arrivals, dead, death)
            print(f"\nredirects to the dead slave per {BUCKET:g} s after its death: {buckets}")
            late = {k: n for k, n in buckets.items() if k * BUCKET >= DEAD_WITHIN}
            assert late == {}, f"redirects to a slave dead for {DEAD_WITHIN} s: {buckets}"
            after = [a for a in arrivals if a.at >= death + DEAD_WITHIN]
            assert after and all(a.sock is not None for a in after)  # all served by live slaves
            assert_cluster_is_the_sum(master, slaves[:2])
        finally:
            for arrival in arrivals:
                if arrival.sock is not None:
                    arrival.sock.close()
            if source is not None:
                source.close()
            for server in reversed(started):
                server.stop()
                print(f"--- {server.url} output ---\n{server.output()}")


@needs_icecast2
def test_an_icecast2_slave_relays_from_a_director_master_with_fanout_slaves(tmp_path):
    with Lan(hosts=2) as lan:
        started: list[FanoutProcess] = []
        source = icecast = None
        try:
            master = start_fanout_in(lan[0], host_xml(
                lan[0], port=PORT, extra="<max-redirect-slaves>4</max-redirect-slaves>"
                                         "<redirect-mode>always</redirect-mode>"), tmp_path, workers=1)
            started.append(master)
            source = PacedSource(master, MOUNT, chunk=1024, pace=0.01)
            slave = start_fanout_in(lan[1], redirecting_slave_xml(master, address=lan[1].address,
                                                                  port=PORT), tmp_path, workers=1)
            started.append(slave)
            wait_for(lambda: cluster_listeners(master)[1] == 2, 15, "the fanout slave's registration")
            icecast = icecast2_slave_of(master)
            # Its pull (no credentials, User-Agent "Icecast 2.4.4") is served, not redirected.
            wait_for(lambda: status_of(icecast, MOUNT) == 200, 15, f"{MOUNT} on the icecast2 slave")
            assert_pattern_flows(icecast, MOUNT)
        finally:
            if icecast is not None:
                icecast.stop()
            if source is not None:
                source.close()
            for server in reversed(started):
                server.stop()
                print(f"--- {server.url} output ---\n{server.output()}")


@pytest.mark.skip(reason="Icecast-KH is neither installed nor packaged here, and its sources "
                         "(github.com/karlheyes/icecast-kh) cannot be fetched to build it")
def test_an_icecast_kh_slave_relays_from_a_director_master() -> None:
    """Would start an Icecast-KH slave with <master-redirect>1 against the director master."""
