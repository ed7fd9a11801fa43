"""Applying ingest output to a ring: the one write path for sources and relay pulls."""
from __future__ import annotations

from typing import Any

from fanout.model.ingest import IngestChunk


def append_chunk(ring: Any, chunk: IngestChunk) -> None:
    """Write the chunk's audio, then its Ogg header set, then its sync points.

    Sync points are published after the bytes they point into, so a listener joining in
    between never starts past `write_seq`; the header set is published before the sync
    points of the data pages that need it.
    """
    base = ring.write_seq
    if chunk.data:
        ring.write(chunk.data)
    if chunk.stream_header is not None:
        ring.set_stream_header(chunk.stream_header)
    for offset in chunk.sync_offsets:
        ring.add_sync_point(base + offset)
