"""What a fanout slave reports of itself on each registration (issue 12 §1):
`fanout.supervisor.slaves.own_load` over real counters and rings."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from fanout import core
from fanout.config import parse_config
from fanout.counters import Counters
from fanout.lifecycle import RelayState
from fanout.mountinfo import RelayInfo, stream_info
from fanout.registry import MountRecord
from fanout.supervisor.slaves import own_load

CONFIG = parse_config("""<icecast><limits><clients>300</clients></limits>
  <mount><mount-name>/secret</mount-name><hidden>1</hidden></mount></icecast>""")


@pytest.fixture
def counters() -> Iterator[Counters]:
    shared = Counters.create()
    yield shared
    shared.close()


def record(name: str, listeners: int, state: RelayState = RelayState.STREAMING) -> MountRecord:
    ring = core.Ring.create(core.ring_capacity_for(65536, 0), core.FORMAT_GENERIC)
    ring.set_listener_count(0, listeners)
    relay = RelayInfo("http://master:8000" + name, state)
    return MountRecord(name, ring, 0, stream_info(None, "10.0.0.1", relay=relay))  # worker 0 pulls it


def test_a_slave_reports_its_listeners_capacity_and_public_mounts(counters):
    counters.add(0, "listeners", 7)
    mounts = {"/a": record("/a", 5), "/secret": record("/secret", 2)}
    load = own_load(CONFIG, counters, mounts, {"/a"}, serving=True, refresh=0.5)
    assert (load.listeners, load.capacity, load.healthy, load.refresh) == (7, 300, True, 0.5)
    assert load.mounts == (("/a", 5),)  # a hidden mount's name never leaves the server
    assert load.mount_count == 1  # the list is complete: a master may rely on it


def test_a_configured_capacity_wins_over_the_clients_limit(counters):
    config = parse_config("<icecast><master-redirect-capacity>40</master-redirect-capacity></icecast>")
    assert own_load(config, counters, {}, set(), serving=True, refresh=None).capacity == 40


@pytest.mark.parametrize("relayed, serving", [({"/a", "/b"}, True), ({"/a"}, False)])
def test_a_slave_with_a_relay_not_up_or_stopping_is_unhealthy(counters, relayed, serving):
    load = own_load(CONFIG, counters, {"/a": record("/a", 0)}, relayed, serving, refresh=0.5)
    assert not load.healthy


@pytest.mark.parametrize("state, healthy", [
    (RelayState.STREAMING, True), (RelayState.IDLE, True),  # idle: on demand, connects for them
    (RelayState.RECONNECTING, False), (RelayState.RETRYING, False), (RelayState.CONNECTING, False)])
def test_a_slave_is_healthy_only_while_its_relays_take_newcomers(counters, state, healthy):
    load = own_load(CONFIG, counters, {"/a": record("/a", 0, state)}, {"/a"}, True, refresh=0.5)
    assert load.healthy is healthy
