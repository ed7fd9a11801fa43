"""The order pytest-xdist hands files out in: the long ones first.

With `--dist loadfile` a file runs whole on one worker, and xdist hands files out in the
order of its queue. Its default queue puts the files with the most tests first, so the
files of a few long real-time tests (liquidsoap, players, the netns fleet, the 100,000-mount
master) came last and ran on alone while the other workers had finished. pyproject.toml
passes --no-loadscope-reorder so the queue is the collection order, and this hook puts
LONG_FILES at its head, longest first: the many short files then fill in around them.
"""
from __future__ import annotations

import pytest

# Files that take half a minute or more on one worker of the 2-core machine, longest
# first (measured with --durations). The order is only a scheduling hint: a stale entry
# costs balance, never a result.
LONG_FILES = (
    "tests/adversarial/test_master.py",
    "tests/integration/test_liquidsoap.py",
    "tests/adversarial/test_fuzz.py",
    "tests/integration/test_players.py",
    "tests/integration/test_fleet_netns.py",
    "tests/integration/test_redirect.py",
    "tests/integration/test_relay_configured.py",
    "tests/integration/test_relay_resilience.py",
    "tests/integration/test_stats_icecast.py",
    "tests/adversarial/test_master_huge_list.py",
    "tests/integration/test_relay.py",
    "tests/adversarial/test_faults.py",
    "tests/integration/test_relay_icecast.py",
    "tests/integration/test_relay_configured_icecast.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """LONG_FILES first, in their order; every other file after them, in collection order
    (the sort is stable, and a file's tests keep their order)."""
    rank = {path: number for number, path in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(LONG_FILES)))
