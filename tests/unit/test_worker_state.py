"""A worker's mounts follow MountState's table (fanout/worker/state.py): a relay
reconnecting holds its mount, mount_down ends it, forgetting closes its ring once; and the
queries every worker answers are registered under the names the others ask for."""
from __future__ import annotations

import dataclasses

import pytest

from fanout import core
from fanout.config import Config
from fanout.lifecycle import IllegalTransition, MountEvent, MountState, RelayState
from fanout.messages import MOVE_CLIENTS
from fanout.mountinfo import RelayInfo, stream_info, with_relay
from fanout.worker import connection  # noqa: F401  (imports every handler: registers queries)
from fanout.worker.admin_queries import move_clients
from fanout.worker.queries import QUERIES
from fanout.worker.state import LocalMount, Tallies

STREAMING = stream_info(None, "master", relay=RelayInfo("http://m:8000/a", RelayState.STREAMING))
RECONNECTING = with_relay(STREAMING, state=RelayState.RECONNECTING)


@pytest.fixture
def mount():
    ring = core.Ring.create(core.ring_capacity_for(65536, 0), core.FORMAT_GENERIC)
    yield LocalMount("/a", ring, STREAMING, Config().resolve_mount("/a"))
    ring.close()


def test_a_relay_reconnecting_holds_the_mount_and_streaming_again_resumes_it(mount):
    mount.set_info(RECONNECTING)
    assert mount.state is MountState.HELD and not mount.ended
    mount.set_info(with_relay(RECONNECTING, bytes_read=10))  # still reconnecting: still held
    assert mount.state is MountState.HELD
    mount.set_info(STREAMING)
    assert mount.state is MountState.LIVE


def test_an_ended_mount_stays_ended_whatever_its_info_says(mount):
    mount.advance(MountEvent.END)
    mount.set_info(RECONNECTING)
    assert mount.state is MountState.ENDED and mount.ended
    with pytest.raises(IllegalTransition):
        mount.advance(MountEvent.END)


def test_a_source_mount_is_never_held(mount):
    mount.set_info(stream_info("audio/mpeg", "10.0.0.1"))
    assert mount.state is MountState.LIVE


def test_peaks_are_per_stream(mount):
    tallies = Tallies()
    mount.ring.set_listener_count(0, 5)
    tallies.observe_listener_count(mount)
    mount.ring.set_listener_count(0, 2)
    tallies.observe_listener_count(mount)
    assert tallies.local_peak(mount) == 5
    mount.info = dataclasses.replace(mount.info, stream_start=99.0)  # a new source's stream
    assert tallies.local_peak(mount) == 0
    tallies.observe_listener_count(mount)
    assert tallies.local_peak(mount) == 2


def test_refusals_are_counted_by_reason():
    tallies = Tallies()
    for status in (401, 401, 404, 418, 0):
        tallies.count_refusal(status)
    assert tallies.refusals == {"unauthorized": 2, "not_found": 1, "other": 1, "closed": 1}


def test_every_query_is_registered_under_the_name_it_is_asked_by():
    assert move_clients.__name__ == MOVE_CLIENTS and QUERIES[MOVE_CLIENTS] is move_clients
    assert sorted(QUERIES) == ["auth_users", "kill_client", "kill_source", "list_clients",
                               "mount_figures", "move_clients", "worker_figures"]
    assert all(name == handler.__name__ for name, handler in QUERIES.items())
