"""Bystanders: a source and listeners that must not notice an attack on someone else.

The adversarial tests (tests/adversarial/) all assert the same thing besides the attacked
client's answer: every *other* source and listener goes on untouched. A `Bystander` is
that other party: a source streaming the byte pattern (tests/support/clients.py) on its
own mount from a thread, and several listeners (so that every worker is likely to hold
one), each reading it. `assert_untouched()` checks that every listener is still connected,
received new bytes since the last check, and that everything it received is one exact,
gapless slice of the pattern.
"""
from __future__ import annotations

import threading
import time
from typing import Any

from tests.support.clients import Listener, Source, locate_in_pattern
from tests.support.waiting import wait_for

# Pattern bytes the bystander source sends per write, and the pause between writes
# (~400 KB/s: enough to see progress quickly, far below any pacing limit).
CHUNK = 4096
PAUSE = 0.01
# Listeners opened: with 2 workers, the chance that all land on one is 1 in 8.
LISTENERS = 4
# New bytes each listener must receive for a check to pass.
PROGRESS = 32 * 1024


class Bystander:
    """A pattern source on `mount` and LISTENERS listeners of it; use as a context manager."""

    def __init__(self, server: Any, mount: str = "/bystander", listeners: int = LISTENERS) -> None:
        self.server = server
        self.mount = mount
        self.source = Source(server.host, server.port, mount)
        assert self.source.accepted, self.source.response
        self.stopping = threading.Event()
        self.failed: BaseException | None = None
        self.thread = threading.Thread(target=self._feed, daemon=True)
        self.thread.start()
        self.listeners = [Listener(server.host, server.port, mount).start()
                          for _ in range(listeners)]
        self.marks = [0] * listeners
        self.assert_untouched()

    def _feed(self) -> None:
        try:
            while not self.stopping.is_set():
                self.source.send_pattern(CHUNK)
                time.sleep(PAUSE)  # pacing a producer, not synchronisation
        except OSError as exc:
            self.failed = exc

    def assert_untouched(self, timeout: float = 15.0) -> None:
        """Every listener is connected, got PROGRESS new bytes, all of one pattern slice."""
        for index, listener in enumerate(self.listeners):
            mark = self.marks[index]
            wait_for(lambda: len(listener.body) >= mark + PROGRESS or listener.closed.is_set(),
                     timeout, f"bystander listener {index} to receive more of the stream")
            assert not listener.closed.is_set(), f"bystander listener {index} was disconnected"
            locate_in_pattern(bytes(listener.body))
            self.marks[index] = len(listener.body)
        assert self.failed is None, f"the bystander source was cut: {self.failed!r}"

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.source.close()
        for listener in self.listeners:
            listener.close()

    def __enter__(self) -> "Bystander":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
