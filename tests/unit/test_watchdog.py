"""The supervisor's watchdog: a worker is killed when it did not boot in time or its
heartbeat in the shared counters is older than --timeout, and not before. The "worker"
is a real process (sleep), killed for real."""
from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from fanout import control
from fanout.config import default_config
from fanout.supervisor import BOOT_TIMEOUT, DEFAULT_TIMEOUT, Supervisor, WorkerHandle

# A worker SIGSTOPped this long (issue 9) must survive the default timeout.
STOPPED_FOR = 12.0


@pytest.fixture
def supervisor() -> Iterator[Supervisor]:
    sup = Supervisor(default_config("s", "a", "r", port=0), None, workers=1)
    yield sup
    sup.counters.close()


@pytest.fixture
def handle() -> Iterator[WorkerHandle]:
    parent, child = control.make_pair()
    child.close()
    proc = subprocess.Popen(["sleep", "60"])
    yield WorkerHandle(0, proc, control.Channel(parent))
    proc.kill()
    proc.wait()
    parent.close()


def test_a_worker_silent_for_less_than_the_timeout_is_left_alone(supervisor, handle):
    handle.booted = True
    supervisor.counters.beat(0, handle.started)
    assert DEFAULT_TIMEOUT > STOPPED_FOR
    supervisor.pool.check_worker(handle, handle.started + STOPPED_FOR)
    assert not handle.killed and handle.proc.poll() is None


def test_a_worker_silent_past_the_timeout_is_killed(supervisor, handle, caplog):
    handle.booted = True
    supervisor.counters.beat(0, handle.started)
    supervisor.pool.check_worker(handle, handle.started + DEFAULT_TIMEOUT + 1)
    assert handle.killed and handle.proc.wait(timeout=5) == -9
    assert f"sent no heartbeat for {DEFAULT_TIMEOUT + 1:.1f}s (timeout {DEFAULT_TIMEOUT}s)" in caplog.text


def test_a_recent_beat_keeps_a_worker_alive(supervisor, handle):
    handle.booted = True
    supervisor.counters.beat(0, handle.started + DEFAULT_TIMEOUT)
    supervisor.pool.check_worker(handle, handle.started + DEFAULT_TIMEOUT + 1)
    assert not handle.killed


def test_a_worker_that_does_not_boot_in_time_is_killed(supervisor, handle, caplog):
    supervisor.pool.check_worker(handle, handle.started + BOOT_TIMEOUT - 1)
    assert not handle.killed
    supervisor.pool.check_worker(handle, handle.started + BOOT_TIMEOUT + 1)
    assert handle.killed and handle.proc.wait(timeout=5) == -9
    assert f"did not boot within {BOOT_TIMEOUT}s; killing it" in caplog.text


def test_no_worker_is_killed_while_the_server_stops(supervisor, handle):
    handle.booted = True
    supervisor.exit_status = 0
    supervisor.pool.check_worker(handle, handle.started + 10 * DEFAULT_TIMEOUT)
    assert not handle.killed


def test_a_dead_workers_heartbeat_is_forgotten(supervisor):
    supervisor.counters.beat(3, 1234.5)
    assert supervisor.counters.last_beat(3) == 1234.5
    supervisor.counters.reset_row(3)
    assert supervisor.counters.last_beat(3) is None
