"""Supervised greenlets (fanout/supervised.py): an unexpected exception is logged once
with its traceback, counted, and the unit restarted or given up as its spawn says."""
from __future__ import annotations

import logging

import gevent
import pytest

from fanout import supervised
from fanout.counters import SUPERVISOR_ROW, Counters


@pytest.fixture(autouse=True)
def fresh_counts(monkeypatch):
    """Local counts only, from zero; restarts quick enough for a unit test."""
    monkeypatch.setattr(supervised, "_local", {})
    monkeypatch.setattr(supervised, "_counters", None)
    monkeypatch.setattr(supervised, "RESTART_FIRST", 0.001)
    monkeypatch.setattr(supervised, "RESTART_MAX", 0.004)


def reports(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("internal error in ")]


class Crashes:
    """A unit that raises its first `times` runs, then returns."""

    def __init__(self, times: int) -> None:
        self.times = times
        self.runs = 0

    def __call__(self) -> None:
        self.runs += 1
        if self.runs <= self.times:
            raise ValueError(f"crash {self.runs}")


def test_a_crash_is_logged_once_with_its_traceback_counted_and_the_unit_restarted(caplog):
    unit = Crashes(1)
    supervised.spawn("worker.pump", unit, restart=True).join(timeout=5)
    assert unit.runs == 2
    (record,) = reports(caplog)
    assert record.getMessage() == "internal error in worker.pump"
    assert record.exc_info is not None and str(record.exc_info[1]) == "crash 1"
    assert supervised.local_counts() == {"worker.pump": 1}


def test_a_unit_that_keeps_crashing_is_given_up_and_closes_what_it_owned(caplog):
    unit, closed = Crashes(100), []
    supervised.spawn("worker.pump", unit, restart=True,
                     give_up=lambda: closed.append(True)).join(timeout=5)
    assert unit.runs == supervised.RESTART_LIMIT and closed == [True]
    assert len(reports(caplog)) == supervised.RESTART_LIMIT
    assert f"worker.pump crashed {supervised.RESTART_LIMIT} times in a row; given up" in caplog.text


def test_without_give_up_a_crashing_unit_is_restarted_for_ever():
    unit = Crashes(3 * supervised.RESTART_LIMIT)
    supervised.spawn("relay.pull", unit, restart=True).join(timeout=5)
    assert unit.runs == 3 * supervised.RESTART_LIMIT + 1
    assert supervised.local_counts() == {"relay.pull": 3 * supervised.RESTART_LIMIT}


def test_a_long_run_ends_a_streak_of_crashes(monkeypatch):
    monkeypatch.setattr(supervised, "STABLE_RUN", 0.01)
    runs, closed = [], []

    def unit() -> None:
        runs.append(1)
        if len(runs) <= 2 * supervised.RESTART_LIMIT:
            gevent.sleep(0.02)  # ran longer than STABLE_RUN before crashing
            raise ValueError("late crash")

    supervised.spawn("worker.pump", unit, restart=True,
                     give_up=lambda: closed.append(True)).join(timeout=5)
    assert len(runs) == 2 * supervised.RESTART_LIMIT + 1 and closed == []


def test_a_one_shot_unit_is_not_restarted_and_runs_its_give_up(caplog):
    unit, closed = Crashes(1), []
    supervised.spawn("auth.notify", unit, restart=False,
                     give_up=lambda: closed.append(True)).join(timeout=5)
    assert unit.runs == 1 and closed == [True] and len(reports(caplog)) == 1


def test_a_timer_unit_is_reported_too(caplog):
    unit = Crashes(1)
    supervised.spawn_later(0.001, "supervisor.gather", unit).join(timeout=5)
    assert unit.runs == 1 and supervised.local_counts() == {"supervisor.gather": 1}


def test_a_killed_unit_is_not_an_error(caplog):
    greenlet = supervised.spawn("worker.heartbeat", gevent.sleep, 10, restart=True)
    gevent.sleep(0)
    greenlet.kill()
    assert greenlet.dead and reports(caplog) == [] and supervised.local_counts() == {}


def test_an_unknown_unit_is_counted_as_unsupervised():
    try:
        raise ValueError("boom")
    except ValueError:
        supervised.report("no.such.unit")
    assert supervised.local_counts() == {"unsupervised": 1}


def test_an_exception_that_reaches_the_hub_is_reported_as_unsupervised(monkeypatch, caplog):
    hub = gevent.get_hub()
    monkeypatch.setattr(hub, "print_exception", hub.print_exception)  # undone after the test
    supervised.install_hub_reporter()
    gevent.spawn(Crashes(1)).join(timeout=5)
    (record,) = reports(caplog)
    assert record.getMessage().startswith("internal error in unsupervised (")
    assert supervised.local_counts() == {"unsupervised": 1}


def test_counts_land_in_the_shared_row_and_every_process_is_summed(monkeypatch):
    counters = Counters.create()
    try:
        supervised.report("worker.pump")  # before count_into: carried over
        supervised.count_into(counters, SUPERVISOR_ROW)
        supervised.report("worker.pump")
        other = Counters.attach(counters.fd)  # another process's view, another row
        other.add(0, supervised.error_field("worker.pump"), 3)
        assert counters.internal_errors()["worker.pump"] == 5
        assert set(counters.internal_errors()) == set(supervised.UNITS)
        assert supervised.local_counts() == {}
    finally:
        counters.close()


def test_an_injected_fault_fails_the_units_first_run_only(monkeypatch, caplog):
    monkeypatch.setattr(supervised, "_faults", {"worker.pump"})
    runs: list[int] = []
    supervised.spawn("worker.pump", lambda: runs.append(1), restart=True).join(timeout=5)
    supervised.spawn("worker.pump", lambda: runs.append(2), restart=True).join(timeout=5)
    assert runs == [1, 2]  # the first spawn ran once, after its injected crash
    (record,) = reports(caplog)
    assert record.exc_info is not None and isinstance(record.exc_info[1], supervised.InjectedFault)


def test_no_fault_is_injected_unless_the_environment_names_it():
    assert supervised.FAULT_ENV == "FANOUT_INJECT_FAULT"
    assert supervised._faults == set()  # the test run does not set it
