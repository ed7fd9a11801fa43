"""The one switch between the compiled core and its pure-Python twin.

Everything outside the core imports the ring, the sender and the ingest from here:

- FANOUT_CORE unset (or "compiled"): fanout._core and fanout._ingest, the production path.
  If they were not built this raises ImportError; there is deliberately no silent
  fallback, because the reference twins are far too slow to serve real load.
- FANOUT_CORE=python: fanout.coreref and fanout.ingestref, the pure-Python references
  (tests, debugging).

IMPLEMENTATION says which one was picked ("compiled" or "python").
"""
from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Literal

RING_NAMES = [
    "HEADER_SIZE", "GUARD", "PAGE", "MIN_CAPACITY", "WAKE_BATCH", "MAX_WORKERS",
    "SYNC_SLOTS", "SYNC_MIN_GAP", "FORMAT_GENERIC", "FORMAT_OGG", "FLAG_LIVE", "FLAG_ENDED",
    "OK", "WOULD_BLOCK", "LAPPED", "ERROR",
    "MAX_META_BLOCK", "MAX_STREAM_HEADER", "INITIAL_METADATA",
    "LappedError", "Ring", "Listener", "ring_capacity_for", "send_many",
    "Doorbells", "Waiter",
]
INGEST_NAMES = [
    "Ingest", "READ_EOF", "READ_AGAIN", "FEED_FD_MAX",
    "EVENT_TITLE", "EVENT_HEADERS", "EVENT_SKIPPED",
    "FeedPoll", "FEED_EOF", "FEED_ERROR", "FEED_EVENTS", "FEED_PACED", "FEED_IDLE",
]
__all__ = ["IMPLEMENTATION", *RING_NAMES, *INGEST_NAMES]

ENV_VAR = "FANOUT_CORE"
MODULES = {"compiled": ("fanout._core", "fanout._ingest"),
           "python": ("fanout.coreref", "fanout.ingestref")}

IMPLEMENTATION: Literal["compiled", "python"]

if TYPE_CHECKING:
    # Type checkers see the compiled API (fanout/_core.pyi, fanout/_ingest.pyi); the twins
    # have the same names.
    from fanout._core import (
        ERROR, FLAG_ENDED, FLAG_LIVE, FORMAT_GENERIC, FORMAT_OGG, GUARD, HEADER_SIZE,
        INITIAL_METADATA, LAPPED, MAX_META_BLOCK, MAX_STREAM_HEADER, MAX_WORKERS,
        MIN_CAPACITY, OK, PAGE, SYNC_MIN_GAP, SYNC_SLOTS, WAKE_BATCH, WOULD_BLOCK,
        Doorbells, LappedError, Listener, Ring, Waiter, ring_capacity_for, send_many,
    )
    from fanout._ingest import (
        EVENT_HEADERS, EVENT_SKIPPED, EVENT_TITLE, FEED_EOF, FEED_ERROR, FEED_EVENTS,
        FEED_FD_MAX, FEED_IDLE, FEED_PACED, READ_AGAIN, READ_EOF, FeedPoll, Ingest,
    )
else:
    def _load(choice):
        if choice not in MODULES:
            raise ImportError(f"{ENV_VAR}={choice!r}: expected 'compiled' or 'python'")
        try:
            return choice, [importlib.import_module(name) for name in MODULES[choice]]
        except ImportError as exc:
            if choice == "python":
                raise
            raise ImportError("compiled core missing: run pip install . "
                              f"(or set {ENV_VAR}=python for the slow reference)") from exc

    IMPLEMENTATION, (_ring, _ingest) = _load(os.environ.get(ENV_VAR) or "compiled")
    globals().update({name: getattr(_ring, name) for name in RING_NAMES})
    globals().update({name: getattr(_ingest, name) for name in INGEST_NAMES})
