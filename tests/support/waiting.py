"""Waiting on a condition with a deadline: the only synchronisation tests use."""
from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")

POLL = 0.02


def wait_for(condition: Callable[[], T], timeout: float, what: str) -> T:
    """Return the first truthy value of `condition()`; AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(POLL)
