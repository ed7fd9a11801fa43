"""Test-side oracles for the sender: written independently of both implementations."""
from __future__ import annotations

import socket
from collections.abc import Iterable

# What a pass of send_many is expected to have sent: the ring bytes it covered and the
# metadata (generation, block) that was current during that pass.
Pass = tuple[bytes, tuple[int, bytes]]


def icy_block(title: str) -> bytes:
    """An ICY metadata block: length byte L, then StreamTitle padded with NULs to 16*L."""
    body = f"StreamTitle='{title}';".encode()
    blocks = -(-len(body) // 16)
    return bytes([blocks]) + body.ljust(16 * blocks, b"\0")


def expected_icy_stream(prefix: bytes, passes: Iterable[Pass], metaint: int) -> bytes:
    """The byte stream a listener should receive: prefix, then audio with an ICY block after
    every `metaint` audio bytes. A block is the full current one when its generation
    differs from the last full block sent, else the single byte NUL."""
    out = bytearray(prefix)
    left, last_gen = metaint, 0
    for audio, (gen, block) in passes:
        i = 0
        while i < len(audio):
            take = min(left, len(audio) - i)
            out += audio[i:i + take]
            i += take
            left -= take
            if left == 0:
                out += block if gen != last_gen else b"\0"
                last_gen, left = gen, metaint
    return bytes(out)


def parse_icy_stream(stream: bytes, metaint: int) -> tuple[bytes, list[tuple[int, int]]]:
    """Split an ICY stream into (audio, [(start, end) of every non-empty block])."""
    audio = bytearray()
    blocks: list[tuple[int, int]] = []
    i = 0
    while i < len(stream):
        audio += stream[i:i + metaint]
        i += metaint
        if i >= len(stream):
            break
        end = i + 1 + 16 * stream[i]
        assert end <= len(stream), "stream ends inside a metadata block"
        if end > i + 1:
            blocks.append((i, end))
        i = end
    return bytes(audio), blocks


def drain(sock: socket.socket, limit: int = 1 << 30) -> bytes:
    """Everything the socket has ready now (at most `limit` bytes), without blocking."""
    chunks = []
    while limit > 0:
        try:
            data = sock.recv(min(limit, 1 << 16), socket.MSG_DONTWAIT)
        except BlockingIOError:
            break
        if not data:
            break
        chunks.append(data)
        limit -= len(data)
    return b"".join(chunks)
