"""The bench against a real Icecast 2.4.4: the swarm verifies, every scenario runs.

Tiny sizes only: these tests keep the bench from rotting; none asserts a speed.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fanout.bench import report
from fanout.bench.feeder import Feeder, SourceRefused, SourceSpec, open_source
from fanout.bench.progress import QuietDisplay
from fanout.bench.runner import Endpoint, run_scenario, wait_for_mount
from fanout.bench.scenarios import load_scenarios
from fanout.bench.swarm import SwarmSpec, run_swarm
from tests.bench.conftest import SERVER_SCENARIOS, needs_icecast, tiny

pytestmark = needs_icecast


def test_swarm_verifies_a_realtime_stream_from_icecast(icecast):
    feeder = Feeder([SourceSpec(icecast.host, icecast.port, "/verify", icecast.source_password)])
    feeder.start()
    try:
        wait_for_mount(icecast.host, icecast.port, "/verify")
        result = run_swarm(SwarmSpec(icecast.host, icecast.port, "/verify", listeners=3,
                                     duration=3.0, read_rate=16384, icy=True))
    finally:
        assert feeder.stop().error is None
    counts = result["counts"]
    assert result["established"] == 3 and result["failed"] == 0
    assert counts["verified_bytes"] > 0 and counts["icy_blocks"] > 0
    assert sum(counts[name] for name in report.ERROR_COUNTERS) == 0


def test_wrong_source_password_is_refused_with_401(icecast):
    with pytest.raises(SourceRefused) as refused:
        open_source(SourceSpec(icecast.host, icecast.port, "/nope", "wrong-password"))
    assert refused.value.status == 401


@pytest.mark.parametrize("name", SERVER_SCENARIOS)
def test_every_scenario_runs_at_tiny_size(icecast, name):
    scenario = tiny(load_scenarios()[name])
    endpoint = Endpoint("icecast", icecast.host, icecast.port, f"/tiny-{name}",
                        icecast.source_password, pid=icecast.pid)
    [result] = run_scenario(endpoint, scenario, QuietDisplay())
    assert result.error is None
    median, step = result.median, scenario.steps[0]
    assert set(report.FIGURE_KEYS) <= set(median)
    assert median["mounts_served"] == median["sources_connected"] == step.mounts
    assert median["server_cpu_pct"] is not None and median["server_pss_mb"] is not None
    assert median["supervisor_cpu_pct"] is None  # one process: nothing to split
    if step.listeners:
        assert median["failed"] == 0 and median["errors"] == 0


def test_cli_against_a_target_prints_the_table_and_writes_json(icecast, tmp_path):
    out = tmp_path / "result.json"
    url = f"http://{icecast.host}:{icecast.port}/cli"
    proc = subprocess.run(
        [sys.executable, "-m", "fanout.bench", "--target", url, "--source-password",
         icecast.source_password, "--scenario", "realtime", "-n", "2", "--duration", "1",
         "--runs", "1", "--no-progress", "--json", str(out)],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "listeners established" in proc.stdout and "target" in proc.stdout
    saved = json.loads(out.read_text())
    median = saved["steps"][0]["servers"]["target"]["median"]
    assert set(report.FIGURE_KEYS) <= set(median) and median["errors"] == 0
