"""The relay scenarios end to end at tiny size: an Icecast 2.4.4 master fed by the bench
(one for the module), fanout and Icecast each as its slave. None asserts a speed."""
from __future__ import annotations

import dataclasses

import pytest

from fanout.bench.progress import QuietDisplay
from fanout.bench.relay import run_relay_scenario
from fanout.bench.scenarios import Scenario, load_scenarios
from tests.bench.conftest import TINY_LISTENERS, TINY_MOUNTS, needs_icecast, tiny

pytestmark = needs_icecast

POLL_INTERVAL = 1.0  # s: the slaves find the master's mounts quickly


def tiny_relay(name: str) -> Scenario:
    scenario = tiny(load_scenarios()[name])
    steps = tuple(dataclasses.replace(s, poll_interval=POLL_INTERVAL) for s in scenario.steps)
    return dataclasses.replace(scenario, steps=steps)


@pytest.mark.parametrize("name", ["relay-edge", "relay-1000"])
def test_relay_scenario_measures_fanout_and_icecast_as_slaves(icecast, name):
    results = run_relay_scenario(["fanout", "icecast"], tiny_relay(name), QuietDisplay(),
                                 workers=2, master=icecast)
    assert set(results) == {"fanout", "icecast"}
    for kind, [result] in results.items():
        assert result.error is None, (kind, result.error)
        median = result.median
        assert median["mounts"] == median["mounts_served"] == TINY_MOUNTS, kind
        assert median["established"] == median["held"] == TINY_MOUNTS * TINY_LISTENERS, kind
        assert median["failed"] == 0 and median["errors"] == 0, kind
        assert median["verified_bytes"] > 0 and median["server_cpu_pct"] is not None, kind
        assert median["pss_per_mount_kib"] is not None, kind
    fanout, icecast = results["fanout"][0].median, results["icecast"][0].median
    assert fanout["supervisor_cpu_pct"] is not None and fanout["workers_cpu_pct"] is not None
    assert icecast["supervisor_cpu_pct"] is None


def test_relay_1000_feeds_the_master_in_bigger_writes():
    step = load_scenarios()["relay-1000"].steps[0]
    assert step.mounts == 1000 and step.listeners == 2 and step.source_write_frames > 1
