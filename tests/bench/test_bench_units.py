"""Scenario files, figures, the table, the generated config and the CLI's guards."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from fanout.bench import __main__ as cli
from fanout.bench import payload, report
from fanout.bench.icecast import BenchServerConfig, MasterLink, render_icecast_xml
from fanout.bench.runner import Endpoint
from fanout.bench.scenarios import ScenarioError, load_scenarios, parse_scenario, with_overrides
from fanout.bench.sessions import kinds_for

ISSUE_SCENARIOS = {"realtime", "fanout", "storm", "latency", "scale",
                   "sources", "mounts", "relay-edge", "relay-1000", "idle", "soak"}


def swarm_totals(**overrides):
    hist = [0] * payload.HIST_SIZE
    hist[payload.hist_index(20_000)] = 10
    counts = dict.fromkeys(payload.COUNTERS, 0) | {"body_bytes": 2_000_000, "verified_bytes": 1_996_800}
    return {"established": 10, "failed": 0, "pending": 0, "dropped": 0, "held": 10, "stalls": 0,
            "stall_seconds": 0.0, "error_listeners": 0, "cut_errors": 0, "cut_error_listeners": 0,
            "churned": 0, "reconnects": 0, "fail_reasons": {}, "status_counts": {"200": 10},
            "elapsed": 2.0, "cpu_seconds": 0.1, "counts": counts, "ttfb_hist": hist,
            "ttfb_loop_hist": hist, "open_lag_hist": hist, "connect_hist": hist,
            "head_hist": hist, "latency_hist": hist} | overrides


def test_scenario_file_has_every_scenario_of_the_issue():
    assert ISSUE_SCENARIOS <= set(load_scenarios())


def test_list_of_listener_counts_is_one_step_each():
    scenario = load_scenarios()["latency"]
    assert [s.listeners for s in scenario.steps] == [1, 100, 1000]


def test_overrides_replace_steps_and_durations():
    scenario = with_overrides(load_scenarios()["scale"], listeners=[3, 4], duration=1.5, runs=1)
    assert [(s.listeners, s.duration, s.runs) for s in scenario.steps] == [(3, 1.5, 1), (4, 1.5, 1)]
    assert scenario.until_degraded


def test_fast_reading_and_fast_source_are_zero_rate_and_no_bitrate():
    step = load_scenarios()["fanout"].steps[0]
    assert step.read_rate == 0 and step.source_bitrate is None


def test_unknown_scenario_key_is_an_error():
    with pytest.raises(ScenarioError, match="unknown keys"):
        parse_scenario("x", {"listners": 5})


def test_figures_have_every_key_and_derive_rates():
    fig = report.figures(report.RunMeasures(swarm_totals(), seconds=2.0, server_cpu_seconds=0.5,
                                            server_rss_bytes=30_000_000, source_bytes=32_000))
    assert set(report.FIGURE_KEYS) <= set(fig)
    assert fig["delivered_mb_s"] == pytest.approx(1.0)
    assert fig["server_cpu_pct"] == pytest.approx(25.0)
    assert fig["server_cpu_s_per_gb"] == pytest.approx(250.0)
    assert fig["latency_p50_ms"] == pytest.approx(20, rel=0.07)


def test_steady_figures_cover_only_the_window_with_every_listener_in():
    fig = report.figures(report.RunMeasures(swarm_totals(), seconds=10.0, server_cpu_seconds=3.0,
                                            server_rss_bytes=None, source_bytes=0,
                                            steady_cpu_seconds=2.0, steady_seconds=4.0))
    assert fig["server_cpu_pct"] == pytest.approx(30.0)
    assert fig["steady_cpu_pct"] == pytest.approx(50.0)
    assert fig["steady_s"] == pytest.approx(4.0)


def test_unknown_server_process_leaves_its_figures_empty():
    fig = report.figures(report.RunMeasures(swarm_totals(), 2.0, None, None, 0))
    assert fig["server_cpu_pct"] is None and fig["server_rss_mb"] is None


def test_median_is_per_figure():
    runs = [{"failed": v, "stalls": None} for v in (3, 1, 2)]
    median = report.median_figures(runs)
    assert median["failed"] == 2 and median["stalls"] is None


def test_any_lost_listener_or_byte_is_degraded():
    assert not report.degraded({"failed": 0, "dropped": 0, "stalls": 0, "errors": 0})
    assert report.degraded({"failed": 0, "dropped": 0, "stalls": 1, "errors": 0})


def test_table_has_a_ratio_column_when_both_servers_ran():
    fig = {key: 2.0 for key in report.FIGURE_KEYS}
    table = report.render_table([("realtime n=1", {"fanout": fig, "icecast": {**fig, "stalls": 1.0}})],
                                ["fanout", "icecast"])
    assert "fanout/icecast" in table.splitlines()[0]
    stalls = next(line for line in table.splitlines() if "stalls" in line)
    assert stalls.split()[-1] == "2.00"


def test_table_shows_a_server_that_did_not_start():
    table = report.render_table([("s", {"fanout": "not started: boom", "icecast": {}})],
                                ["icecast", "fanout"])
    assert "error" in table


def test_generated_icecast_xml_has_the_limits_and_paths():
    xml = render_icecast_xml(BenchServerConfig(8123, "src&pw", "adm"), Path("/tmp/x"))
    root = ET.fromstring(xml)
    assert root.findtext("listen-socket/port") == "8123"
    assert root.findtext("authentication/source-password") == "src&pw"
    assert int(root.findtext("limits/clients")) >= 20_000
    assert root.findtext("paths/logdir") == "/tmp/x"


def test_target_off_loopback_is_refused(capsys):
    code = cli.main(["--target", "http://192.0.2.1:8000/live", "--source-password", "x", "--no-progress"])
    assert code == cli.EXIT_USAGE and "loopback" in capsys.readouterr().err


def test_target_needs_a_source_password(capsys):
    code = cli.main(["--target", "http://127.0.0.1:8000/live", "--no-progress"])
    assert code == cli.EXIT_USAGE and "--source-password" in capsys.readouterr().err


def test_unknown_scenario_is_a_usage_error(capsys):
    code = cli.main(["--scenario", "nope", "--servers", "icecast", "--no-progress"])
    assert code == cli.EXIT_USAGE and "unknown scenario" in capsys.readouterr().err


def test_hold_runs_until_the_last_arrival_plus_the_hold():
    scenario = parse_scenario("s", {"listeners": [100, 500], "arrival_rate": 100, "hold": 5})
    assert [s.duration for s in scenario.steps] == [6.0, 10.0]
    assert [s.duration for s in with_overrides(scenario, listeners=[300]).steps] == [8.0]
    assert [s.duration for s in with_overrides(scenario, duration=2).steps] == [2, 2]


def test_unknown_server_kind_is_a_usage_error(capsys):
    code = cli.main(["--servers", "nginx", "-n", "1", "--no-progress"])
    assert code == cli.EXIT_USAGE and "unknown server" in capsys.readouterr().err


def test_help_lists_every_scenario_with_its_description(capsys):
    with pytest.raises(SystemExit):
        cli.parse_args(["--help"])
    out = capsys.readouterr().out
    for name, scenario in load_scenarios().items():
        assert f"  {name} " in out and scenario.description in " ".join(out.split())
        assert scenario.description


def test_all_means_every_scenario_but_the_soak():
    args = cli.parse_args(["--scenario", "all"])
    names = [s.name for s in cli.select_scenarios(args)]
    assert "soak" not in names and {"sources", "relay-1000", "idle"} <= set(names)


def test_listeners_are_per_mount_and_hold_counts_them_all():
    scenario = load_scenarios()["mounts"]
    [step] = scenario.steps
    assert (step.mounts, step.listeners, step.total_listeners) == (200, 25, 5000)
    assert step.duration == 5000 / step.arrival_rate + step.hold
    [small] = with_overrides(scenario, listeners=[5], mounts=10).steps
    assert small.total_listeners == 50 and small.name == "mounts 10 mounts x 5"


def test_relay_and_soak_scenarios_have_their_kind_and_servers():
    known = load_scenarios()
    assert known["relay-edge"].kind == known["relay-1000"].kind == "relay"
    assert known["soak"].kind == "soak" and known["soak"].servers == ("fanout",)
    faults = known["soak"].steps[0].faults
    assert (faults.churn_rate, faults.kill_interval, faults.metadata_interval) == (50, 60, 5)
    assert kinds_for(known["soak"], None) == ["fanout"]
    assert kinds_for(known["soak"], ["icecast", "fanout"]) == ["fanout", "icecast"]
    assert kinds_for(known["relay-edge"], None) == ["fanout", "icecast"]


def test_unknown_kind_or_server_in_a_scenario_is_an_error():
    with pytest.raises(ScenarioError, match="kind"):
        parse_scenario("x", {"kind": "cluster"})
    with pytest.raises(ScenarioError, match="servers"):
        parse_scenario("x", {"servers": ["nginx"]})


def test_fresh_mounts_are_new_for_every_run_and_fixed_ones_are_numbered():
    fresh = Endpoint("x", "127.0.0.1", 1, "/m", "pw")
    assert fresh.next_mounts(2) == ["/m-1", "/m-2"] and fresh.next_mounts(1) == ["/m-3"]
    fixed = Endpoint("x", "127.0.0.1", 1, "/m", "pw", fresh_mounts=False)
    assert fixed.next_mounts(1) == ["/m"] and fixed.next_mounts(2) == ["/m-1", "/m-2"]


def test_a_run_without_listeners_has_no_listener_figures_and_the_table_leaves_them_out():
    fig = report.figures(report.RunMeasures(None, seconds=2.0, server_cpu_seconds=0.2,
                                            server_rss_bytes=None, source_bytes=64_000,
                                            mounts=4, sources_connected=4))
    assert fig["established"] is None and fig["ttfb_socket_p99_ms"] is None
    assert fig["server_cpu_pct"] == pytest.approx(10.0) and fig["sources_connected"] == 4
    table = report.render_table([("sources", {"fanout": fig})], ["fanout"])
    assert "sources connected" in table and "listeners established" not in table


def test_cpu_is_split_between_supervisor_and_workers_only_when_there_are_workers():
    split = report.CpuSplit(total=1.0, root=0.25, children=0.75, has_children=True)
    fig = report.figures(report.RunMeasures(swarm_totals(), 10.0, 1.0, None, 0, cpu_split=split))
    assert fig["supervisor_cpu_pct"] == pytest.approx(2.5)
    assert fig["workers_cpu_pct"] == pytest.approx(7.5)
    alone = report.CpuSplit(total=1.0, root=1.0, children=0.0, has_children=False)
    fig = report.figures(report.RunMeasures(swarm_totals(), 10.0, 1.0, None, 0, cpu_split=alone))
    assert fig["supervisor_cpu_pct"] is None and fig["workers_cpu_pct"] is None


def test_memory_per_mount_is_the_growth_over_the_run_divided_by_the_mounts():
    fig = report.figures(report.RunMeasures(None, 1.0, None, None, 0, mounts=10,
                                            pss_before=50 * 2**20, pss_after=60 * 2**20))
    assert fig["pss_per_mount_kib"] == pytest.approx(1024.0)
    assert fig["server_pss_mb"] == pytest.approx(60 * 2**20 / 1e6)


def test_old_and_new_time_to_first_byte_are_both_reported():
    loop = [0] * payload.HIST_SIZE
    loop[payload.hist_index(5_000)] = 10
    fig = report.figures(report.RunMeasures(swarm_totals(ttfb_loop_hist=loop), 2.0, None, None, 0))
    assert fig["ttfb_socket_p99_ms"] == pytest.approx(20, rel=0.07)
    assert fig["ttfb_loop_p99_ms"] == pytest.approx(5, rel=0.07)


def test_rss_slope_is_in_mb_per_hour():
    samples = [(t, 100_000_000 + t * 1_000_000 // 360) for t in range(0, 3600, 10)]
    assert report.rss_slope(samples) == pytest.approx(10.0, rel=1e-3)
    assert report.rss_slope([(5.0, 1)]) is None


def test_a_slave_config_names_its_master_and_the_source_limit_is_raised():
    link = MasterLink("127.0.0.1", 8001, "relay&pw", update_interval=5)
    root = ET.fromstring(render_icecast_xml(BenchServerConfig(8123, "s", "a", master=link), Path("/tmp/x")))
    assert root.findtext("master-server") == "127.0.0.1"
    assert root.findtext("master-server-port") == "8001"
    assert root.findtext("master-update-interval") == "5"
    assert root.findtext("master-password") == "relay&pw"
    assert int(root.findtext("limits/sources")) >= 1000


def test_relay_and_soak_scenarios_cannot_run_against_a_target(capsys):
    code = cli.main(["--target", "http://127.0.0.1:8000/live", "--source-password", "x",
                     "--scenario", "relay-edge", "--no-progress"])
    assert code == cli.EXIT_USAGE and "--target" in capsys.readouterr().err
