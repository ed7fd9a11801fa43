"""Fanout servers as separate hosts on one LAN of network namespaces (tests/support/netns.py).

Host 0 is a master, host 1 its slave; both listen on port 8000 of their own address. The
test process (root namespace) feeds the master and listens on the slave, so the relay
between them runs host to host. Also checked: the peer addresses each server sees, and
that a Lan leaves nothing behind, after an exception or a killed run.
"""
from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.admin import get
from tests.support.clients import Listener, Source, locate_in_pattern
from tests.support.netns import (Host, Lan, host_xml, links, needs_netns, netns_names,
                                 start_fanout_in)
from tests.support.server import RELAY_PASSWORD, FanoutProcess
from tests.support.waiting import wait_for

pytestmark = needs_netns

PORT = 8000
MOUNT = "/pattern"
MASTER_INTERVAL = 1
RELAY_TIMEOUT = 3 * MASTER_INTERVAL + 10


def slave_xml(host: Host, master: FanoutProcess) -> str:
    return host_xml(host, port=PORT, extra=f"""
  <master-server>{master.host}</master-server>
  <master-server-port>{master.port}</master-server-port>
  <master-password>{RELAY_PASSWORD}</master-password>
  <master-update-interval>{MASTER_INTERVAL}</master-update-interval>""")


@pytest.fixture
def lan() -> Iterator[Lan]:
    with Lan(hosts=2) as lan:
        yield lan


@pytest.fixture
def relay(lan: Lan, tmp_path: Path) -> Iterator[tuple[FanoutProcess, FanoutProcess]]:
    """(master on host 0, slave of it on host 1); both stopped before the Lan goes."""
    started: list[FanoutProcess] = []
    try:
        started.append(start_fanout_in(lan[0], host_xml(lan[0], port=PORT), tmp_path))
        started.append(start_fanout_in(lan[1], slave_xml(lan[1], started[0]), tmp_path))
        yield started[0], started[1]
    finally:
        for server in reversed(started):
            server.stop()
            # Shown by pytest only when the test failed.
            print(f"--- {server.url} output ---\n{server.output()}")


def feeding(source: Source, condition: Callable[[], object]) -> Callable[[], object]:
    """`condition` for wait_for, sending the next 4 KiB of the pattern before each check."""
    def fed() -> object:
        source.send_pattern(4096)
        return condition()
    return fed


def status_of(server: FanoutProcess, mount: str) -> int:
    probe = Listener(server.host, server.port, mount).start()
    probe.close()
    return int(probe.head.split(b" ", 2)[1])


def client_ips(server: FanoutProcess, mount: str) -> list[str]:
    answer = get(server, f"/admin/listclients?mount={mount}")
    if answer.status != 200:
        return []
    return [c.findtext("IP") or "" for c in answer.xml().iter("listener")]


def mount_stat(server: FanoutProcess, mount: str, name: str) -> str | None:
    node = get(server, "/admin/stats").xml().find(f"source[@mount='{mount}']")
    return None if node is None else node.findtext(name)


def test_each_host_serves_on_its_own_address_and_the_slave_relays_the_master(
        relay: tuple[FanoutProcess, FanoutProcess], lan: Lan) -> None:
    master, slave = relay
    assert (master.host, master.port) == (lan[0].address, PORT)
    assert (slave.host, slave.port) == (lan[1].address, PORT)
    source = Source(master.host, master.port, MOUNT)
    assert source.accepted, source.response
    try:
        wait_for(feeding(source, lambda: status_of(slave, MOUNT) == 200), RELAY_TIMEOUT,
                 f"the slave to relay {MOUNT}")
        listener = Listener(slave.host, slave.port, MOUNT).start()
        try:
            wait_for(feeding(source, lambda: len(listener.body) > 64 * 1024), 20,
                     "64 KiB through the slave")
            locate_in_pattern(bytes(listener.body))
        finally:
            listener.close()
        upstream = mount_stat(slave, MOUNT, "relay_upstream") or ""
        assert upstream.startswith(f"http://{lan[0].address}:{PORT}/"), upstream
    finally:
        source.close()


def test_servers_see_each_peer_from_its_own_host_address(
        relay: tuple[FanoutProcess, FanoutProcess], lan: Lan) -> None:
    master, slave = relay
    source = Source(master.host, master.port, MOUNT)
    assert source.accepted, source.response
    try:
        # The slave's relay is a listener of the master, connected from host 1's address.
        wait_for(feeding(source, lambda: lan[1].address in client_ips(master, MOUNT)),
                 RELAY_TIMEOUT, "the slave among the master's listeners")
        assert client_ips(master, MOUNT) == [lan[1].address]
        # The test process reaches the hosts from the bridge's address.
        assert mount_stat(master, MOUNT, "source_ip") == lan.gateway
        assert mount_stat(master, MOUNT, "listenurl") == f"http://{lan[0].address}:{PORT}{MOUNT}"
        listener = Listener(slave.host, slave.port, MOUNT).start()
        try:
            wait_for(feeding(source, lambda: client_ips(slave, MOUNT) == [lan.gateway]), 10,
                     "the test's listener among the slave's listeners")
        finally:
            listener.close()
    finally:
        source.close()


def lan_names(lan: Lan) -> set[str]:
    return {lan.bridge, *(host.name for host in lan.hosts), *(host.veth for host in lan.hosts)}


def existing_names() -> set[str]:
    return netns_names() | set(links())


def test_lan_is_gone_after_an_exception_and_two_lans_do_not_clash() -> None:
    with pytest.raises(RuntimeError, match="inside"):
        with Lan(hosts=2) as first, Lan(hosts=1) as second:
            names = lan_names(first) | lan_names(second)
            assert names <= existing_names()
            assert first.subnet != second.subnet
            assert first.bridge != second.bridge
            raise RuntimeError("inside")
    assert not names & existing_names()


KILLED_RUN = """
import signal
from tests.support.netns import Lan
lan = Lan(hosts=2).__enter__()
print(lan.bridge, *(h.name for h in lan.hosts), *(h.veth for h in lan.hosts), flush=True)
signal.pause()
"""


def test_leftovers_of_a_killed_run_are_removed_before_a_new_lan_is_built() -> None:
    root = Path(__file__).resolve().parents[2]
    run = subprocess.Popen([sys.executable, "-c", KILLED_RUN], stdout=subprocess.PIPE,
                           text=True, cwd=root)
    assert run.stdout is not None
    try:
        leftovers = set(run.stdout.readline().split())
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait()
    assert len(leftovers) == 5 and leftovers <= existing_names()
    with Lan(hosts=1) as lan:
        assert not leftovers & existing_names()
        assert lan_names(lan) <= existing_names()
    assert not lan_names(lan) & existing_names()
