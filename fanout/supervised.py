"""Supervised greenlets: no unexpected exception ends a long-lived unit silently.

Theory of operation: every long-lived greenlet of every process is started with `spawn`
(a one-shot timer with `spawn_later`) under the name of its unit, one of UNITS. An
exception other than GreenletExit is *reported*: logged once with its traceback and
counted under the unit's name, in this process's row of the shared `Counters` once
`count_into` was called (a local tally before, e.g. in unit tests). /metrics shows the
sum of every process's rows as `fanout_internal_errors_total{where=…}`. Then the unit
recovers the way its spawn says:

- `restart=True`: it runs again after a backoff (RESTART_FIRST, doubling up to
  RESTART_MAX). A unit that crashed RESTART_LIMIT times in a row, each time less than
  STABLE_RUN seconds after it (re)started, is given up: `give_up` runs, to close what the
  unit owned. Without a `give_up` it is restarted for ever at RESTART_MAX.
- `restart=False`: it ends there and `give_up` (if any) runs.

Code that catches an error itself and carries on (a control message that failed, one
relay attempt) calls `report` directly, so every internal error is logged and counted
alike. Whatever still escapes a greenlet reaches gevent's hub, whose printer
`install_hub_reporter` replaces with `report("unsupervised")`: even then, not silent.

Fault injection, for tests only: the environment variable FAULT_ENV may name units
(comma-separated); in each process, the first run of each named unit raises
`InjectedFault` before it starts, so a test can watch a real process report, count and
recover from a crash end to end. Unset (always, in production) it does nothing; it is
read from the environment at import and nothing a client sends can reach it.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from types import TracebackType
from typing import Any, Callable, Protocol

import gevent
from greenlet import GreenletExit

log = logging.getLogger("fanout.internal")

# Every unit's name (the `where` label). The shared counters have one column per name,
# so the set is fixed; a name missing here is counted as "unsupervised".
UNITS = (
    "supervisor.control",  # a worker's control channel, read and dispatched
    "supervisor.signal",  # the main loop's handling of a signal (SIGHUP's reload, …)
    "supervisor.watchdog",  # worker heartbeats and boot deadlines
    "supervisor.gather",  # a gather's timeout
    "relay.poller",  # the master's stream-list poll loop
    "relay.pull",  # one relay pull (its connect/stream/retry loop)
    "relay.on_demand",  # one on-demand relay pull (watches its listener count)
    "relay.probe",  # a pull on a backup upstream probing the preferred ones
    "worker.control",  # the supervisor's control channel, read and dispatched
    "worker.heartbeat",  # the worker's heartbeat
    "worker.remount",  # asking again for rings that arrived without their fd
    "worker.pump",  # one mount's listener pump
    "worker.connection",  # a client connection's handler (sources' read loops included)
    "worker.feedpoll",  # the FeedHub's callbacks: every source socket read, idle sweeps
    "worker.move",  # retrying a move of Ogg listeners to a page boundary
    "worker.status_feed",  # keeps the status page's live feed current (worker/webfeed.py)
    "auth.sweep",  # ends the sessions of authenticated listeners that left
    "auth.expire",  # a listener's <timelimit>
    "auth.notify",  # a listener_remove POST to the auth server
    "unsupervised",  # anything that reached gevent's hub
)

# Seconds before the first restart of a crashed unit; doubles per crash in a row.
RESTART_FIRST = 0.1
# Longest wait before a restart: a crashing unit costs one traceback per this many seconds.
RESTART_MAX = 5.0
# A run this long (s) ends a streak of crashes: the next crash starts the backoff afresh.
STABLE_RUN = 10.0
# Crashes in a row (each within STABLE_RUN) after which a unit with a `give_up` is given up.
RESTART_LIMIT = 5

# Environment variable naming the units whose first run fails (tests only, see above).
FAULT_ENV = "FANOUT_INJECT_FAULT"
_faults = {unit for unit in os.environ.get(FAULT_ENV, "").split(",") if unit}


class InjectedFault(Exception):
    """The crash FAULT_ENV asked for."""


class ErrorCounters(Protocol):
    """Where errors are counted: the shared `fanout.counters.Counters`."""

    def add(self, row: int, name: str, delta: int) -> None: ...


_counters: ErrorCounters | None = None
_row = 0
_local: dict[str, int] = {}  # counts before `count_into` (unit tests, start-up)


def count_into(counters: ErrorCounters, row: int) -> None:
    """Count this process's internal errors in `row` of the shared `counters` from now on
    (what was counted before is carried over)."""
    global _counters, _row
    _counters, _row = counters, row
    if _faults:
        log.warning("%s: faults will be injected into %s (tests only)", FAULT_ENV,
                    ", ".join(sorted(_faults)))
    for unit, count in _local.items():
        counters.add(row, error_field(unit), count)
    _local.clear()


def error_field(unit: str) -> str:
    """The `Counters` column that counts unit `unit`'s internal errors."""
    return f"errors:{unit}"


def report(where: str, context: str = "",
           exc_info: tuple[type[BaseException], BaseException, TracebackType | None] | None = None
           ) -> None:
    """Log the exception being handled (or `exc_info`) with its traceback, and count it
    under `where`. Never raises."""
    try:
        suffix = f" ({context})" if context else ""
        log.error("internal error in %s%s", where, suffix, exc_info=exc_info or sys.exc_info())
    except Exception:  # a broken log must not turn a report into a second crash
        pass
    unit = where if where in UNITS else "unsupervised"
    if _counters is None:
        _local[unit] = _local.get(unit, 0) + 1
    else:
        _counters.add(_row, error_field(unit), 1)


def local_counts() -> dict[str, int]:
    """Errors counted in this process before `count_into` (by unit)."""
    return dict(_local)


def spawn(where: str, func: Callable[..., Any], *args: Any, restart: bool,
          give_up: Callable[[], None] | None = None) -> gevent.Greenlet:
    """Run `func(*args)` in a greenlet supervised as unit `where` (see the module doc)."""
    return gevent.spawn(_supervise, where, func, args, restart, give_up)


def spawn_later(seconds: float, where: str, func: Callable[..., Any], *args: Any) -> gevent.Greenlet:
    """Run `func(*args)` once after `seconds`, supervised as unit `where` (no restart)."""
    return gevent.spawn_later(seconds, _supervise, where, func, args, False, None)


def _supervise(where: str, func: Callable[..., Any], args: tuple[Any, ...], restart: bool,
               give_up: Callable[[], None] | None) -> None:
    crashes = 0
    while True:
        started = time.monotonic()
        try:
            _inject(where)
            func(*args)
            return
        except GreenletExit:
            raise  # killed on purpose: not an error
        except Exception:
            report(where)
        crashes = 1 if time.monotonic() - started >= STABLE_RUN else crashes + 1
        if not restart or (give_up is not None and crashes >= RESTART_LIMIT):
            break
        gevent.sleep(min(RESTART_MAX, RESTART_FIRST * 2 ** (crashes - 1)))
    if give_up is not None:
        if restart:
            log.error("%s crashed %d times in a row; given up", where, crashes)
        try:
            give_up()
        except Exception:
            report(where, "while giving up")


def _inject(where: str) -> None:
    if where in _faults:
        _faults.discard(where)
        raise InjectedFault(f"{where}: fault injected by {FAULT_ENV}")


def install_hub_reporter() -> None:
    """Report, as unit "unsupervised", whatever exception reaches this thread's hub
    (gevent prints it to stderr otherwise: not in error.log, not counted)."""
    def print_exception(context: Any, kind: Any, value: Any, tb: Any) -> None:
        report("unsupervised", repr(context)[:200], (kind, value, tb))

    gevent.get_hub().print_exception = print_exception
