"""KH slave redirect between fanout servers on loopback (PROTOCOL.md §2).

A slave with `<master-redirect>1` registers through its polls; its master, when it would
refuse a listener for `<max-listeners>`, answers 302 to the slave instead. A fanout slave
also reports its load and goes on the fast schedule; a master with `<redirect-mode>always`
sends every listener on (never a relay pull, never twice, never back to its own address)
and stops choosing a slave whose /health probe or relay pulls failed (issue 12). Several
hosts with their own addresses, in network namespaces, share the listeners at the end.
"""
from __future__ import annotations

import json
import socket
import struct

import pytest

from tests.integration.test_relay import (PacedSource, assert_pattern_flows, servers,  # noqa: F401
                                          wait_status)
from tests.support.clients import Listener, basic, raw_request, read_head
from tests.support.hostile import HostileServer, answer, silent
from tests.support.netns import Lan, host_xml, needs_netns, start_fanout_in
from tests.support.server import RELAY_PASSWORD, FanoutProcess, icecast_xml
from tests.support.waiting import wait_for

FULL_MOUNT = "<mount><mount-name>/full</mount-name><max-listeners>1</max-listeners></mount>"


def redirecting_slave_xml(master: FanoutProcess, redirect: int = 1, address: str = "127.0.0.1",
                          port: int = 0, extra: str = "") -> str:
    """A slave of `master` that registers for redirects (with `address` as its hostname)."""
    return icecast_xml(address=address, port=port, extra=f"""{extra}
  <master-server>{master.host}</master-server>
  <master-server-port>{master.port}</master-server-port>
  <master-password>{RELAY_PASSWORD}</master-password>
  <master-update-interval>5</master-update-interval>
  <master-redirect>{redirect}</master-redirect>""")


def get(server: FanoutProcess, target: str, extra: str = "") -> bytes:
    request = f"GET {target} HTTP/1.1\r\nHost: x\r\n{extra}\r\n"
    return raw_request(server.host, server.port, request.encode(), timeout=5)


# Where the listeners of the loopback tests come from: not 127.0.0.1, where the slaves poll
# from, since a master never sends a listener to a slave on the listener's own address.
LISTENER_ADDRESS = "127.0.0.2"


def answer_head(server: FanoutProcess, target: str, extra: str = "",
                source: str = LISTENER_ADDRESS) -> bytes:
    """The head of the answer to a GET from `source` (a stream's body is not waited for)."""
    request = f"GET {target} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()
    with socket.create_connection((server.host, server.port), 5, (source, 0)) as sock:
        sock.sendall(request)
        return read_head(sock)[0]


def redirected(master: FanoutProcess, target: str) -> bytes:
    """The master's 302 for `target`, once it sends one: the registration the master
    first logs may predate the slave's relay of the mount (its pulls start once its
    workers booted), and a slave that does not list a mount is not sent its listeners."""
    def answer() -> bytes | None:
        head = answer_head(master, target)
        return head if head.startswith(b"HTTP/1.1 302 Found\r\n") else None
    return wait_for(answer, 10, f"a 302 for {target}")


def listeners_of(server: FanoutProcess, mount: str) -> int:
    """The mount's listener count in /status-json.xsl (-1 if it is not listed)."""
    body = get(server, "/status-json.xsl").partition(b"\r\n\r\n")[2]
    sources = json.loads(body)["icestats"].get("source", [])
    for source in sources if isinstance(sources, list) else [sources]:
        if source["listenurl"].endswith(mount):
            return int(source["listeners"])
    return -1


def head_line(answer: bytes, name: str) -> str | None:
    for line in answer.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.lower() == name.lower():
            return value.strip()
    return None


def test_a_full_mount_redirects_to_a_registered_slave(servers):
    master = servers("master", icecast_xml(mounts=FULL_MOUNT,
                                           extra="<max-redirect-slaves>2</max-redirect-slaves>"))
    source = PacedSource(master, "/full")
    try:
        slave = servers("slave", redirecting_slave_xml(master))
        wait_status(slave, "/full", 200, 10)
        wait_for(lambda: "redirect slave 127.0.0.1:%d registered" % slave.port in master.output(),
                 10, "the slave's registration at the master")
        first = Listener(master.host, master.port, "/full").start()
        assert first.head.startswith(b"HTTP/1.0 200 OK")
        answer = redirected(master, "/full?token=abc")
        assert head_line(answer, "location") == \
            f"http://127.0.0.1:{slave.port}/full?token=abc&fanout-redirected=1"
        assert head_line(answer, "content-length") == "0"
        # Never back to where it came from, never a second time: the refusal stands.
        for refused in (answer_head(master, "/full", source="127.0.0.1"),
                        answer_head(master, "/full?token=abc&fanout-redirected=1")):
            assert refused.startswith(b"HTTP/1.0 403 Forbidden"), refused[:80]
        assert_pattern_flows(slave, "/full")  # where the Location leads
        first.close()
    finally:
        source.close()


def test_a_fanout_slave_registers_with_its_capacity_and_listeners(servers):
    master = servers("master", icecast_xml(extra="<max-redirect-slaves>2</max-redirect-slaves>"))
    slave = servers("slave", redirecting_slave_xml(
        master, extra="<master-redirect-capacity>7</master-redirect-capacity>"))
    registered = f"redirect slave 127.0.0.1:{slave.port} registered (capacity 7, 0 listeners)"
    wait_for(lambda: registered in master.output(), 10, "the registration with its load")
    assert "fanout-capacity" not in slave.output()  # the report is not an error anywhere


def test_only_a_poll_with_a_load_report_is_asked_for_the_fast_schedule(servers):
    master = servers("master", icecast_xml(extra="<max-redirect-slaves>2</max-redirect-slaves>"),
                     workers=1)
    auth = f"Authorization: {basic('relay', RELAY_PASSWORD)}\r\n"
    kh = "?rserver=10.9.9.9&rport=8000&interval=5"
    for path in ("/admin/streamlist.txt", "/admin/streams"):
        plain, loaded = (get(master, path + kh + load, auth) for load in
                         ("", "&fanout-listeners=1&fanout-capacity=9&fanout-health=ok"))
        assert plain.startswith(b"HTTP/1.0 200") and loaded.startswith(b"HTTP/1.0 200")
        assert (head_line(plain, "x-fanout-refresh"), head_line(loaded, "x-fanout-refresh")) == \
            (None, "0.5")


def test_no_redirect_without_max_redirect_slaves_or_master_redirect(servers):
    master = servers("master", icecast_xml(mounts=FULL_MOUNT))  # max-redirect-slaves 0
    other = servers("other", icecast_xml(mounts=FULL_MOUNT,
                                         extra="<max-redirect-slaves>2</max-redirect-slaves>"))
    sources = [PacedSource(master, "/full"), PacedSource(other, "/full")]
    try:
        registering = servers("registering", redirecting_slave_xml(master))
        silent = servers("silent", redirecting_slave_xml(other, redirect=0))
        wait_status(registering, "/full", 200, 10)
        wait_status(silent, "/full", 200, 10)
        for server in (master, other):
            first = Listener(server.host, server.port, "/full").start()
            assert first.head.startswith(b"HTTP/1.0 200 OK")
            assert answer_head(server, "/full").startswith(b"HTTP/1.0 403 Forbidden"), server.url
            first.close()
        assert "registered" not in master.output() + other.output()
    finally:
        for source in sources:
            source.close()


def test_static_redirect_targets_need_no_registration(servers):
    master = servers("master", icecast_xml(
        mounts=FULL_MOUNT, extra="<redirect><host>relay.example.org</host><port>8123</port></redirect>"))
    source = PacedSource(master, "/full")
    try:
        wait_status(master, "/full", 200, 5)
        # wait_status's probe was a listener: the mount holds one place for it until the
        # pump notices it closed, and `first` would be redirected instead.
        wait_for(lambda: listeners_of(master, "/full") == 0, 5, "the probe listener to leave")
        first = Listener(master.host, master.port, "/full").start()
        assert first.head.startswith(b"HTTP/1.0 200 OK"), first.head
        answer = get(master, "/full")
        assert head_line(answer, "location") == "http://relay.example.org:8123/full?fanout-redirected=1"
        first.close()
    finally:
        source.close()


def kill_hard(server: FanoutProcess) -> None:
    """SIGKILL the server's supervisor and workers at once, as if its host died."""
    for process in [*server.workers(), server.proc]:
        process.kill()
    server.proc.wait(5)


def test_a_director_sends_every_listener_to_a_slave_but_relay_pulls_and_redirected_ones(servers):
    master = servers("master", icecast_xml(
        mounts="<mount><mount-name>/secret</mount-name><hidden>1</hidden></mount>",
        extra="<max-redirect-slaves>2</max-redirect-slaves><redirect-mode>always</redirect-mode>"))
    source, hidden = PacedSource(master, "/live"), PacedSource(master, "/secret")
    try:
        slave = servers("slave", redirecting_slave_xml(master))
        wait_status(slave, "/live", 200, 10)
        wait_for(lambda: "redirect slave 127.0.0.1:%d registered" % slave.port in master.output(),
                 10, "the slave's registration at the master")
        answer = redirected(master, "/live?token=abc")
        assert head_line(answer, "location") == \
            f"http://127.0.0.1:{slave.port}/live?token=abc&fanout-redirected=1"
        served = {
            "a relay pull": answer_head(master, "/live", f"Authorization: {basic('relay', RELAY_PASSWORD)}\r\n"),
            "an Icecast slave's pull": answer_head(master, "/live", "User-Agent: Icecast 2.4.4\r\n"),
            "a redirected listener": answer_head(master, "/live?fanout-redirected=1"),
            "a listener on the slave's address": answer_head(master, "/live", source="127.0.0.1"),
            "a listener of a hidden mount (no slave relays it)": answer_head(master, "/secret"),
        }
        for who, head in served.items():
            assert head.startswith(b"HTTP/1.0 200 OK"), (who, head[:80])
        kill_hard(slave)
        wait_for(lambda: answer_head(master, "/live").startswith(b"HTTP/1.0 200 OK"), 10,
                 "the master to serve its listeners itself once its only slave died")
    finally:
        source.close()
        hidden.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("peer, why", [("refused", "cannot connect"),
                                       ("silent", "no answer in 1s")])  # twice in a row
def test_a_registered_slave_whose_health_probe_fails_gets_no_listener(servers, peer, why):
    master = servers("master", icecast_xml(extra="<max-redirect-slaves>2</max-redirect-slaves>"
                                                 "<redirect-mode>always</redirect-mode>"), workers=1)
    source = PacedSource(master, "/live")
    hung = HostileServer(lambda conn, line: silent(conn)) if peer == "silent" else None
    try:
        wait_status(master, "/live", 200, 10)
        port = closed_port() if hung is None else hung.port
        # Registered on a 60 s schedule: it would stay in the table for 3 minutes.
        registration = (f"?rserver=127.0.0.1&rport={port}&interval=5&fanout-listeners=0"
                        "&fanout-capacity=10&fanout-health=ok&fanout-refresh=60")
        get(master, "/admin/streams" + registration,
            f"Authorization: {basic('relay', RELAY_PASSWORD)}\r\n")
        wait_for(lambda: f"redirect slave 127.0.0.1:{port}: /health probe failed ({why}"
                 in master.output(), 10, "the failed probe")
        answer = answer_head(master, "/live")
        assert answer.startswith(b"HTTP/1.0 200 OK"), answer[:80]
    finally:
        if hung is not None:
            hung.close()
        source.close()


def test_a_slave_whose_relay_pulls_all_failed_gets_no_listener(servers):
    master = servers("master", icecast_xml(extra="<max-redirect-slaves>2</max-redirect-slaves>"
                                                 "<redirect-mode>always</redirect-mode>"), workers=1)
    source = PacedSource(master, "/live")
    health = HostileServer(lambda conn, line: answer(conn, b"HTTP/1.0 200 OK\r\n\r\n{}"))
    pull = socket.create_connection((master.host, master.port), 5)
    try:
        wait_status(master, "/live", 200, 10)
        relay = f"Authorization: {basic('relay', RELAY_PASSWORD)}\r\n"
        # A slave at the healthy peer's port, registered on a 60 s schedule (it stays).
        get(master, f"/admin/streams?rserver=127.0.0.1&rport={health.port}&interval=5"
                    "&fanout-listeners=0&fanout-capacity=10&fanout-health=ok&fanout-refresh=60",
            relay)
        pull.sendall(f"GET /admin/streams?mount=/live HTTP/1.0\r\n{relay}\r\n".encode())
        assert read_head(pull)[0].startswith(b"HTTP/1.0 200 OK")
        location = f"http://127.0.0.1:{health.port}/live?fanout-redirected=1"
        wait_for(lambda: head_line(answer_head(master, "/live"), "location") == location, 10,
                 "listeners sent to the registered slave")
        # Probed before its pulls fail: once it is marked dead the prober has no live
        # slave left and ends, which could be before its first round reached the peer.
        wait_for(lambda: health.served("GET /health") > 0, 10, "the slave's first /health probe")
        pull.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        pull.close()  # a reset, as from a host that died
        wait_for(lambda: "its relay pulls from 127.0.0.1 closed" in master.output(), 10,
                 "the master to notice the slave's pull failed")
        # The supervisor's word reaches the workers in their next Redirects: served here then.
        wait_for(lambda: answer_head(master, "/live").startswith(b"HTTP/1.0 200 OK"), 10,
                 "the master's workers to serve the listeners themselves")
    finally:
        pull.close()
        health.close()
        source.close()


# -- a master and two slaves, each a host with its own address --------------------------------


def locations(master: FanoutProcess, count: int) -> list[str]:
    """Where `count` listeners beyond the full mount are sent."""
    return [head_line(get(master, "/full"), "location") or "none" for _ in range(count)]


@needs_netns
def test_listeners_are_shared_between_live_slaves_on_their_own_hosts(tmp_path):
    with Lan(hosts=3) as lan:
        started: list[FanoutProcess] = []
        source = None
        try:
            master = start_fanout_in(lan[0], host_xml(
                lan[0], port=8000, mounts=FULL_MOUNT,
                extra="<max-redirect-slaves>4</max-redirect-slaves>"), tmp_path)
            started.append(master)
            source = PacedSource(master, "/full")
            for host in lan.hosts[1:]:
                config = redirecting_slave_xml(master, address=host.address, port=8000)
                started.append(start_fanout_in(host, config, tmp_path))
            slaves = started[1:]
            urls = {f"http://{lan[i].address}:8000/full?fanout-redirected=1" for i in (1, 2)}
            for slave in slaves:
                wait_status(slave, "/full", 200, 15)
            first = Listener(master.host, master.port, "/full").start()
            # Both registered: 40 redirects reach both (a miss has odds 2 × 2^-40).
            wait_for(lambda: set(locations(master, 40)) == urls, 15, "redirects to both slaves")
            assert_pattern_flows(slaves[0], "/full")
            slaves[1].stop()
            # It stops: once its master notices (a failed /health probe, its registration
            # lapsing on the fast schedule), only the live one is chosen.
            live = f"http://{lan[1].address}:8000/full?fanout-redirected=1"
            wait_for(lambda: set(locations(master, 20)) == {live}, 30,
                     "redirects to the live slave only")
            first.close()
        finally:
            if source is not None:
                source.close()
            for server in reversed(started):
                server.stop()
                print(f"--- {server.url} output ---\n{server.output()}")
