"""Cross-worker queries: what a worker answers when another one gathers (`Worker.gather`).

A handler is a function `handler(worker, **args) -> picklable result`, registered under
its own name with `@query`; the control reader (`main.py`) runs `QUERIES[name]` for each
Query message. Handlers register when their module is imported, and `connection.py`
imports every handler module, so all of them are here before the worker boots.
"""
from __future__ import annotations

from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable[..., object])

# Handlers by name; see Worker.gather.
QUERIES: dict[str, Callable[..., object]] = {}


def query(handler: F) -> F:
    """Register `handler` as the query named after it."""
    QUERIES[handler.__name__] = handler
    return handler
