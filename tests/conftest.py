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

# Files that take 40 s or more on one worker, longest first: the seconds are their tests'
# setup, call and teardown in a full run (`--durations=0`) on the 2-core machine with other
# suites running beside it. The order is only a scheduling hint: a stale entry costs
# balance, never a result.
LONG_FILES = (
    "tests/adversarial/test_fuzz.py",  # 228 s (CPU-bound: 60 s on an idle machine)
    "tests/adversarial/test_master.py",  # 149 s
    "tests/integration/test_relay_configured.py",  # 140 s
    "tests/integration/test_relay.py",  # 130 s
    "tests/integration/test_redirect.py",  # 101 s
    "tests/integration/test_liquidsoap.py",  # 97 s
    "tests/integration/test_lifecycle.py",  # 81 s
    "tests/adversarial/test_faults.py",  # 63 s
    "tests/core/test_ingest.py",  # 58 s
    "tests/integration/test_relay_resilience.py",  # 58 s
    "tests/integration/test_fleet_netns.py",  # 55 s
    "tests/adversarial/test_master_huge_list.py",  # 55 s
    "tests/integration/test_web_render.py",  # 52 s
    "tests/integration/test_players.py",  # 51 s
    "tests/adversarial/test_cli.py",  # 47 s
    "tests/bench/test_against_fanout.py",  # 46 s
    "tests/integration/test_stats_icecast.py",  # 44 s
    "tests/integration/test_security.py",  # 44 s
    "tests/integration/test_web.py",  # 43 s
    "tests/integration/test_relay_icecast.py",  # 43 s
    "tests/integration/test_status_page.py",  # 40 s
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """LONG_FILES first, in their order; every other file after them, in collection order
    (the sort is stable, and a file's tests keep their order)."""
    rank = {path: number for number, path in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(LONG_FILES)))
