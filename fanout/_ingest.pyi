"""Typed stub of the compiled ingest (_core/ingest.pyx). fanout/ingestref.py has the same API."""
from typing import Any, Final

from typing_extensions import Buffer

GUARD: Final[int]
READ_EOF: Final[int]
READ_AGAIN: Final[int]
FEED_FD_MAX: Final[int]

EVENT_TITLE: Final[int]
EVENT_HEADERS: Final[int]
EVENT_SKIPPED: Final[int]

MAX_HEADER_SET: Final[int]
MAX_HEADER_PAGES: Final[int]
MAX_LINK_STREAMS: Final[int]
UNLOCKED_FALLBACK: Final[int]
DEFAULT_MIN_SYNC_GAP: Final[int]

def ogg_crc(data: bytes) -> int: ...

class Ingest:
    def __init__(self, ring: Any, fmt: str, *, min_sync_gap: int = 4096,
                 icy_metaint: int = 0) -> None: ...
    def feed(self, data: Buffer) -> int: ...
    def feed_fd(self, fd: int, max_bytes: int = 65536) -> int: ...
    def take_events(self) -> list[tuple[int, bytes]]: ...
    def close(self) -> None: ...
