"""Test inputs for sans-IO parsers: random splits of a byte stream, and tones from ffmpeg."""
from __future__ import annotations

import random
import subprocess


def random_pieces(data: bytes, rng: random.Random, max_piece: int) -> list[bytes]:
    """`data` cut into consecutive pieces of 1..max_piece bytes (seeded by `rng`)."""
    pieces = []
    pos = 0
    while pos < len(data):
        size = rng.randint(1, max_piece)
        pieces.append(data[pos : pos + size])
        pos += size
    return pieces


def encode_tone(*codec_args: str, seconds: int, freq: int = 440) -> bytes:
    """A sine tone encoded by ffmpeg, e.g. ``encode_tone("-c:a", "libopus", "-f", "ogg", seconds=5)``."""
    command = ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"sine=f={freq}:d={seconds}",
               *codec_args, "-"]
    return subprocess.run(command, check=True, capture_output=True).stdout
