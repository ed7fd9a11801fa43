"""The bench against fanout itself: the swarm verifies its stream, every scenario runs.

Tiny sizes only: these keep the bench and its fanout hook from rotting; none asserts a speed.
"""
from __future__ import annotations

import pytest

from fanout.bench import report
from fanout.bench.feeder import Feeder, SourceSpec
from fanout.bench.progress import QuietDisplay
from fanout.bench.runner import Endpoint, run_scenario, wait_for_mount
from fanout.bench.scenarios import load_scenarios, with_overrides
from fanout.bench.swarm import SwarmSpec, run_swarm
from tests.bench.conftest import SERVER_SCENARIOS, tiny


def test_swarm_verifies_a_realtime_stream_with_icy_from_fanout(fanout_server):
    srv = fanout_server
    feeder = Feeder([SourceSpec(srv.host, srv.port, "/verify", srv.source_password)])
    feeder.start()
    try:
        wait_for_mount(srv.host, srv.port, "/verify")
        result = run_swarm(SwarmSpec(srv.host, srv.port, "/verify", listeners=6, duration=3.0,
                                     read_rate=16384, prebuffer=65536, icy=True))
    finally:
        assert feeder.stop().error is None
    counts = result["counts"]
    assert result["established"] == 6 and result["failed"] == 0
    assert counts["verified_bytes"] > 0 and counts["icy_blocks"] > 0
    assert sum(counts[name] for name in report.ERROR_COUNTERS) == 0


@pytest.mark.parametrize("name", SERVER_SCENARIOS)
def test_every_scenario_runs_at_tiny_size_against_fanout(fanout_server, name):
    srv = fanout_server
    scenario = tiny(load_scenarios()[name])
    endpoint = Endpoint("fanout", srv.host, srv.port, f"/tiny-{name}", srv.source_password,
                        pid=srv.pid)
    [result] = run_scenario(endpoint, scenario, QuietDisplay())
    assert result.error is None
    median, step = result.median, scenario.steps[0]
    assert set(report.FIGURE_KEYS) <= set(median)
    assert median["mounts_served"] == median["sources_connected"] == step.mounts
    assert median["server_cpu_pct"] is not None
    assert median["supervisor_cpu_pct"] is not None and median["workers_cpu_pct"] is not None
    assert median["server_pss_mb"] is not None
    if step.listeners:
        assert median["established"] == step.total_listeners
        assert median["failed"] == 0 and median["errors"] == 0
        assert median["ttfb_socket_p99_ms"] is not None and median["ttfb_loop_p99_ms"] is not None
    else:
        assert median["established"] is None and median["source_mb_s"] > 0


def test_steady_cpu_is_measured_once_every_listener_is_in(fanout_server):
    srv = fanout_server
    scenario = with_overrides(load_scenarios()["realtime"], listeners=[3], duration=3.0, runs=1)
    endpoint = Endpoint("fanout", srv.host, srv.port, "/tiny-steady", srv.source_password,
                        pid=srv.pid)
    [result] = run_scenario(endpoint, scenario, QuietDisplay())
    assert result.error is None and result.median["established"] == 3
    # The swarm reports progress every second: the window opens at the first sample after
    # the three arrivals are reported, well before the 3 s end.
    assert result.median["steady_cpu_pct"] is not None
    assert 0 < result.median["steady_s"] < 3.0


def test_the_realtime_scenario_runs_over_tls_against_fanout_and_icecast():
    # --tls at tiny size: both servers get an <ssl> port; the swarm's listeners reach it
    # through the TLS proxies and verify the stream (no speed asserted).
    from fanout.bench.sessions import kinds_for, run_on_servers  # noqa: PLC0415
    scenario = with_overrides(load_scenarios()["realtime"], listeners=[4], duration=2.0, runs=1)
    results, start_errors = run_on_servers(None, [scenario], QuietDisplay(), workers=2, tls=True)
    for kind in kinds_for(scenario, None):
        if kind in start_errors:
            assert kind == "icecast", start_errors  # icecast2 may be missing; fanout may not
            continue
        [result] = results[kind]["realtime"]
        assert result.error is None, (kind, result.error)
        assert result.median["established"] == 4 and result.median["failed"] == 0, kind
        assert result.median["verified_bytes"] > 0 and result.median["errors"] == 0, kind
