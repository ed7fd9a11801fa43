"""Cross-worker queries: what a worker answers when another one gathers (`Worker.gather`).

A handler is a function `handler(worker, **args) -> picklable result`, registered under
its own name with `@query`; the control reader (`main.py`) runs `QUERIES[name]` for each
Query message. Handlers register when their module is imported, and `connection.py`
imports every handler module, so all of them are here before the worker boots.

Typing: `Worker.gather(handler, **args)` is checked against the handler's own signature,
so the args that cross the channel are the ones the handler takes, by name; the
registry can only say that a handler takes a worker and keyword args (`QueryHandler`).
"""
from __future__ import annotations

from typing import Protocol, TypeVar, cast

from fanout.worker.state import Worker


class Named(Protocol):
    @property
    def __name__(self) -> str: ...


class QueryHandler(Protocol):
    def __call__(self, worker: Worker, /, **args: object) -> object: ...


F = TypeVar("F", bound=Named)

# Handlers by name; see Worker.gather.
QUERIES: dict[str, QueryHandler] = {}


def query(handler: F) -> F:
    """Register `handler` as the query named after it."""
    # Its args arrive by name off the channel, sent by a gather type-checked against it.
    QUERIES[handler.__name__] = cast(QueryHandler, handler)
    return handler
