"""The one switch between the compiled core and its pure-Python twin.

Everything outside the core imports the ring and the sender from here:

- FANOUT_CORE unset (or "compiled"): fanout._core, the production path. If it was not
  built this raises ImportError; there is deliberately no silent fallback, because the
  reference twin is far too slow to serve real load.
- FANOUT_CORE=python: fanout.coreref, the pure-Python reference (tests, debugging).

IMPLEMENTATION says which one was picked ("compiled" or "python").
"""
from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Literal

__all__ = [
    "IMPLEMENTATION",
    "HEADER_SIZE", "GUARD", "MAX_WORKERS", "SYNC_SLOTS", "SYNC_MIN_GAP",
    "FORMAT_GENERIC", "FORMAT_OGG", "FLAG_LIVE", "FLAG_ENDED",
    "OK", "WOULD_BLOCK", "LAPPED", "ERROR",
    "MAX_META_BLOCK", "INITIAL_METADATA",
    "LappedError", "Ring", "Listener", "ring_capacity_for", "send_many",
]

ENV_VAR = "FANOUT_CORE"

IMPLEMENTATION: Literal["compiled", "python"]

if TYPE_CHECKING:
    # Type checkers see the compiled API (fanout/_core.pyi); the twin has the same names.
    from fanout._core import (
        ERROR, FLAG_ENDED, FLAG_LIVE, FORMAT_GENERIC, FORMAT_OGG, GUARD, HEADER_SIZE,
        INITIAL_METADATA, LAPPED, MAX_META_BLOCK, MAX_WORKERS, OK, SYNC_MIN_GAP, SYNC_SLOTS,
        WOULD_BLOCK, LappedError, Listener, Ring, ring_capacity_for, send_many,
    )
else:
    def _load(choice):
        if choice == "python":
            return "python", importlib.import_module("fanout.coreref")
        if choice == "compiled":
            try:
                return "compiled", importlib.import_module("fanout._core")
            except ImportError as exc:
                raise ImportError("compiled core missing: run pip install . "
                                  f"(or set {ENV_VAR}=python for the slow reference)") from exc
        raise ImportError(f"{ENV_VAR}={choice!r}: expected 'compiled' or 'python'")

    IMPLEMENTATION, _impl = _load(os.environ.get(ENV_VAR) or "compiled")
    globals().update({name: getattr(_impl, name) for name in __all__[1:]})
