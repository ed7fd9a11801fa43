"""Single-mount relays, `<relay>` (PROTOCOL.md §3), between real fanout processes.

Icecast 2.4.4 on either side is in test_relay_configured_icecast.py.
"""
from __future__ import annotations

import signal
import socket

import psutil

from tests.integration.test_relay import (PacedSource, assert_pattern_flows,  # noqa: F401
                                          assert_whole_tail_arrives, listen_on_demand, servers,
                                          status_of, wait_status)
from fanout.bench.serving import free_port
from tests.support.clients import (FillSource, Listener, Source, basic, fill_after, pattern_tail,
                                   raw_request, split_icy)
from tests.support.server import ADMIN_PASSWORD, FanoutProcess, exited, icecast_xml
from tests.support.waiting import wait_for


def relay_block(upstream: FanoutProcess, mount: str, local: str = "", extra: str = "") -> str:
    local_mount = f"<local-mount>{local}</local-mount>" if local else ""
    return (f"<relay><server>{upstream.host}</server><port>{upstream.port}</port>"
            f"<mount>{mount}</mount>{local_mount}{extra}</relay>")


def closed_port() -> int:
    """A loopback port nobody listens on (connections to it are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def set_title(server: FanoutProcess, mount: str, title: str) -> None:
    update = (f"GET /admin/metadata?mount={mount}&mode=updinfo&song={title.replace(' ', '%20')} "
              f"HTTP/1.0\r\nAuthorization: {basic('admin', ADMIN_PASSWORD)}\r\n\r\n")
    assert b"200 OK" in raw_request(server.host, server.port, update.encode())


def titles(listener: Listener) -> list[bytes]:
    return split_icy(bytes(listener.body), int(listener.header("icy-metaint") or 0))[1]


def test_relay_pulls_the_upstream_mount_into_its_local_mount_byte_exact(servers):
    upstream = servers("upstream", icecast_xml())
    source = PacedSource(upstream, "/up")
    relay = servers("relay", icecast_xml(extra=relay_block(upstream, "/up", "/down")))
    wait_status(relay, "/down", 200, 10)
    assert status_of(relay, "/up") == 404  # served under its local mount only
    assert_whole_tail_arrives(relay, "/down", source, 128 * 1024, 20)


def test_a_relays_local_mount_is_reserved_connected_or_not(servers):
    dead = closed_port()
    relay = servers("relay", icecast_xml(extra=(
        f"<relay><port>{dead}</port><mount>/up</mount><local-mount>/down</local-mount></relay>"
        f"<relay><port>{dead}</port><mount>/off</mount><enable>0</enable></relay>")))
    wait_for(lambda: "relay /down from" in relay.output(), 5, "the relay to start")
    for mount in ("/down", "/off"):
        assert status_of(relay, mount) == 404
        source = Source(relay.host, relay.port, mount)
        assert source.response.startswith(b"HTTP/1.0 403"), source.response
        assert b"Mountpoint in use" in source.response
        source.close()
    other = Source(relay.host, relay.port, "/other")
    assert other.accepted
    other.close()
    assert "relay /off is disabled" in relay.output()
    assert "relay /off from" not in relay.output()  # never connects


def test_relay_tries_its_next_host_when_the_first_is_down(servers):
    upstream = servers("upstream", icecast_xml())
    source = PacedSource(upstream, "/up")
    try:
        relay = servers("relay", icecast_xml(extra=f"""
          <relay><local-mount>/kh</local-mount>
            <host><server>127.0.0.1</server><port>{closed_port()}</port><mount>/up</mount></host>
            <host><server>{upstream.host}</server><port>{upstream.port}</port><mount>/up</mount></host>
          </relay>"""))
        wait_status(relay, "/kh", 200, 10)
        assert_pattern_flows(relay, "/kh")
        assert "trying the next upstream" in relay.output()
    finally:
        source.close()


def test_relay_comes_back_when_its_upstream_source_returns(servers):
    upstream = servers("upstream", icecast_xml())
    relay = servers("relay", icecast_xml(extra=relay_block(upstream, "/up", "/down")))
    first = PacedSource(upstream, "/up")
    wait_status(relay, "/down", 200, 10)
    first.close()
    gone = wait_status(relay, "/down", 404, 10)
    second = PacedSource(upstream, "/up")
    try:
        back = wait_status(relay, "/down", 200, 15)
        print(f"\nmeasured: relay mount gone {gone:.2f} s after its upstream source left, "
              f"served again {back:.2f} s after it returned")
        assert_pattern_flows(relay, "/down")
    finally:
        second.close()


def test_relay_shoutcast_metadata_decides_whether_upstream_titles_are_relayed(servers):
    upstream = servers("upstream", icecast_xml())
    source = PacedSource(upstream, "/up")
    try:
        relay = servers("relay", icecast_xml(extra=(
            relay_block(upstream, "/up", "/with")
            + relay_block(upstream, "/up", "/without",
                          "<relay-shoutcast-metadata>0</relay-shoutcast-metadata>"))))
        wait_status(relay, "/with", 200, 10)
        wait_status(relay, "/without", 200, 10)
        with_titles = Listener(relay.host, relay.port, "/with", icy=True).start()
        without = Listener(relay.host, relay.port, "/without", icy=True).start()
        set_title(upstream, "/up", "Upstream title")
        wait_for(lambda: any(b"StreamTitle='Upstream title';" in b for b in titles(with_titles)),
                 10, "the upstream title through the relay that asks for it")
        # The other relay's listener has had as many blocks since: none carries the title.
        seen = len(titles(with_titles))
        wait_for(lambda: len(titles(without)) >= seen + 2, 15, "more blocks at /without")
        assert not any(b"Upstream title" in b for b in titles(without))
        with_titles.close()
        without.close()
    finally:
        source.close()


def test_on_demand_relay_connects_for_listeners_and_stays_run_on_seconds(servers):
    upstream = servers("upstream", icecast_xml())
    source = PacedSource(upstream, "/od")
    try:
        relay = servers("relay", icecast_xml(extra=relay_block(
            upstream, "/od", extra="<on-demand>1</on-demand><run-on>2</run-on>")))
        wait_for(lambda: "relay /od from" in relay.output(), 5, "the relay to start")
        lingered = listen_on_demand(relay, upstream, "/od", close_within=10)
        print(f"\nmeasured: on-demand upstream closed {lingered:.2f} s after the last listener "
              "left (run-on 2 s)")
        assert lingered >= 1.5, "the relay hung up before its run-on time"
    finally:
        source.close()


def test_sighup_starts_added_relays_and_stops_removed_ones(servers, tmp_path):
    upstream = servers("upstream", icecast_xml())
    source = PacedSource(upstream, "/up")
    try:
        relay = servers("relay", icecast_xml())
        config = tmp_path / "relay" / "icecast.xml"
        config.write_text(icecast_xml(port=relay.port, extra=relay_block(upstream, "/up", "/added")))
        relay.proc.send_signal(signal.SIGHUP)
        wait_status(relay, "/added", 200, 10)
        listener = Listener(relay.host, relay.port, "/added").start()
        wait_for(lambda: len(listener.body) > 16 * 1024, 10, "audio through the added relay")
        config.write_text(icecast_xml(port=relay.port))
        relay.proc.send_signal(signal.SIGHUP)
        assert listener.closed.wait(10), "the removed relay's listener was not closed"
        wait_status(relay, "/added", 404, 5)
        local = Source(relay.host, relay.port, "/added")  # no longer reserved
        assert local.accepted, local.response
        local.close()
    finally:
        source.close()


def kill(server: FanoutProcess) -> None:
    """SIGKILL a server and its workers: a crash, or the network to it gone."""
    supervisor = psutil.Process(server.proc.pid)
    tree = [*supervisor.children(), supervisor]
    for process in tree:
        process.kill()
    server.proc.wait(10)
    # SIGKILL is asynchronous: a worker still holds the inherited listening socket until it
    # has really exited, and restarting a server on the same port before then fails with
    # EADDRINUSE. Exited means gone or a zombie (its fds are closed by then).
    wait_for(lambda: all(exited(p) for p in tree), 10, "the killed processes to exit")


def test_a_relay_keeps_its_listeners_while_its_upstream_server_is_away(servers):
    port = free_port()
    upstream = servers("upstream", icecast_xml(port=port))
    source = PacedSource(upstream, "/up")
    relay = servers("relay", icecast_xml(
        mounts="<mount><mount-name>/down</mount-name><source-timeout>15</source-timeout></mount>",
        extra=relay_block(upstream, "/up", "/down")))
    wait_status(relay, "/down", 200, 10)
    listener = Listener(relay.host, relay.port, "/down").start()
    wait_for(lambda: pattern_tail(listener), 10, "the pattern through the relay")
    kill(upstream)
    source.close()
    wait_for(lambda: "holding its listeners" in relay.output(), 10, "the relay to hold")
    assert status_of(relay, "/down") == 404  # newcomers are not served a stalled mount
    restarted = servers("upstream-again", icecast_xml(port=port))
    again = PacedSource(restarted, "/up")
    try:
        wait_for(lambda: "its listeners stayed" in relay.output(), 15, "the relay to reconnect")
        back = next(line for line in relay.output().splitlines() if "its listeners stayed" in line)
        print(f"\nmeasured: {back.split('relay /down: ')[1]}")
        mark = len(listener.body)
        wait_for(lambda: len(listener.body) > mark + 32 * 1024 and pattern_tail(listener), 10,
                 "the restarted upstream's stream on the same connection")
        assert not listener.closed.is_set()
        listener.close()
    finally:
        again.close()


def test_a_relay_on_a_backup_host_switches_back_to_its_preferred_host(servers):
    preferred_port = free_port()  # nothing listens there yet
    backup = servers("backup", icecast_xml())
    filler = FillSource(backup, "/up")
    relay = servers("relay", icecast_xml(extra=f"""
      <relay><local-mount>/kh</local-mount><retry-delay>1</retry-delay>
        <host><server>127.0.0.1</server><port>{preferred_port}</port><mount>/up</mount></host>
        <host><server>{backup.host}</server><port>{backup.port}</port><mount>/up</mount></host>
      </relay>"""))
    try:
        wait_status(relay, "/kh", 200, 10)
        listener = Listener(relay.host, relay.port, "/kh").start()
        wait_for(lambda: fill_after(listener, 0), 10, "the backup host's stream")
        preferred = servers("preferred", icecast_xml(port=preferred_port))
        source = PacedSource(preferred, "/up")
        try:
            wait_for(lambda: pattern_tail(listener), 15, "the preferred host's stream, same connection")
            assert not listener.closed.is_set()
            assert "is back; switching to it" in relay.output()
            listener.close()
        finally:
            source.close()
    finally:
        filler.close()
