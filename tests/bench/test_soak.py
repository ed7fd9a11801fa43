"""The soak at tiny size against fanout: churn, metadata updates and killed workers, and
the sources that reconnect after their worker died. None asserts a speed."""
from __future__ import annotations

import dataclasses
import os
import signal

import psutil

from fanout.bench.feeder import Feeder, SourceSpec
from fanout.bench.progress import QuietDisplay
from fanout.bench.runner import Endpoint, wait_for_mount
from fanout.bench.scenarios import Faults, load_scenarios
from fanout.bench.soak import MOUNT_PREFIX, soak_once
from tests.bench.conftest import TINY_LISTENERS, TINY_MOUNTS, tiny
from tests.support.waiting import wait_for

SOURCE_RECONNECT_TIMEOUT = 15.0  # s: the supervisor frees the mount, the source claims it again


def test_soak_runs_with_churn_metadata_updates_and_killed_workers(fanout_server):
    srv = fanout_server
    faults = Faults(churn_rate=4.0, kill_interval=1.5, metadata_interval=1.0, rss_interval=1.0)
    step = dataclasses.replace(tiny(load_scenarios()["soak"], duration=4.5).steps[0], faults=faults)
    endpoint = Endpoint("fanout", srv.host, srv.port, MOUNT_PREFIX, srv.source_password,
                        pid=srv.pid, fresh_mounts=False)
    fig = soak_once(srv, endpoint, step, QuietDisplay(), "tiny soak")
    assert fig["mounts_served"] == TINY_MOUNTS and step.icy
    assert fig["established"] >= TINY_MOUNTS * TINY_LISTENERS
    assert fig["kills"] >= 1 and fig["churned"] >= 1
    assert fig["metadata_updates"] >= 1
    assert fig["uncut_errors"] == 0 and fig["errors"] == fig["cut_errors"]
    assert fig["cut_by_kills"] <= fig["dropped"]
    assert fig["rss_slope_main_mb_h"] is not None and fig["rss_slope_worker_mb_h"] is not None
    assert fig["rss_slope_total_mb_h"] is not None


def connection_holder(server_pid: int, server_port: int) -> psutil.Process:
    """Return the worker holding this test process's one connection to ``server_port``."""
    [mine] = [c for c in psutil.Process().net_connections("tcp")
              if c.raddr and c.raddr.port == server_port and c.status == psutil.CONN_ESTABLISHED]
    holders = [w for w in psutil.Process(server_pid).children()
               if any(c.raddr and c.raddr.port == mine.laddr.port for c in w.net_connections("tcp"))]
    [holder] = holders
    return holder


def test_a_source_cut_by_a_killed_worker_connects_again(fanout_server):
    srv = fanout_server
    feeder = Feeder([SourceSpec(srv.host, srv.port, "/cut", srv.source_password)], reconnect=True)
    feeder.start()
    try:
        wait_for_mount(srv.host, srv.port, "/cut")
        os.kill(connection_holder(srv.pid, srv.port).pid, signal.SIGKILL)
        wait_for(lambda: feeder.reconnections == 1, SOURCE_RECONNECT_TIMEOUT,
                 "the source to connect again")
        wait_for_mount(srv.host, srv.port, "/cut")
        assert feeder.connected() == 1
    finally:
        stats = feeder.stop()
    assert stats.error is None and stats.reconnections == 1
