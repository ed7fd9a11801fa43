"""Progress display of a run: a tqdm bar when tqdm is installed, else plain lines.

tqdm is optional (not a dependency of the server): with it, each run is a bar over
its duration with live listener and throughput counters; without it, one line every
``PLAIN_INTERVAL`` seconds. ``QuietDisplay`` prints only notes (for tests and --json
pipelines with --no-progress).
"""

from __future__ import annotations

import sys
import time
from typing import Any, Protocol, TextIO

from fanout.bench.swarm import SwarmProgress

PLAIN_INTERVAL = 5.0  # s between two progress lines without tqdm


class Display(Protocol):
    def note(self, text: str) -> None: ...
    def begin(self, label: str, seconds: float) -> None: ...
    def update(self, progress: SwarmProgress) -> None: ...
    def end(self) -> None: ...


def _summary(p: SwarmProgress) -> str:
    rate = p.body_bytes / 1e6 / p.elapsed if p.elapsed > 0 else 0.0
    return (f"listeners {p.established}/{p.opened} failed {p.failed} dropped {p.dropped} "
            f"stalls {p.stalls} {rate:.1f} MB/s")


class QuietDisplay:
    def __init__(self, out: TextIO = sys.stderr) -> None:
        self.out = out

    def note(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def begin(self, label: str, seconds: float) -> None:
        pass

    def update(self, progress: SwarmProgress) -> None:
        pass

    def end(self) -> None:
        pass


class PlainDisplay(QuietDisplay):
    def begin(self, label: str, seconds: float) -> None:
        self.label, self.seconds, self.next_line = label, seconds, time.monotonic() + PLAIN_INTERVAL
        self.note(f"{label}: running {seconds:.0f} s")

    def update(self, progress: SwarmProgress) -> None:
        if time.monotonic() >= self.next_line:
            self.next_line += PLAIN_INTERVAL
            self.note(f"{self.label}: {progress.elapsed:5.1f}/{self.seconds:.0f} s  {_summary(progress)}")


class TqdmDisplay(QuietDisplay):
    def __init__(self, tqdm: Any, out: TextIO = sys.stderr) -> None:
        super().__init__(out)
        self.tqdm, self.bar = tqdm, None

    def note(self, text: str) -> None:
        self.tqdm.write(text, file=self.out)

    def begin(self, label: str, seconds: float) -> None:
        self.bar = self.tqdm(total=round(seconds, 1), desc=label, unit="s", file=self.out,
                             bar_format="{desc} {bar} {n:.0f}/{total:.0f} s{postfix}",
                             leave=False)

    def update(self, progress: SwarmProgress) -> None:
        if self.bar is not None:
            self.bar.n = min(progress.elapsed, self.bar.total)
            self.bar.set_postfix_str(_summary(progress))

    def end(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def make_display(enabled: bool) -> Display:
    """Return the display to use: tqdm if installed, plain lines otherwise, or quiet."""
    if not enabled:
        return QuietDisplay()
    try:
        from tqdm import tqdm  # noqa: PLC0415 - optional
    except ModuleNotFoundError:
        return PlainDisplay()
    return TqdmDisplay(tqdm)
