"""Real audio for tests: ffmpeg as a live source client, decode checks, Ogg page walks.

ffmpeg streams a generated tone (`lavfi sine`, deterministic) in real time (`-re`) over its
own icecast protocol, so the server sees exactly what a real encoder sends: `PUT` with
`Expect: 100-continue`, `Ice-*` headers, Basic auth. Captures are judged by decoding them
with ffmpeg itself: a byte lost, doubled or inserted (an ICY block left in the audio, a
torn Ogg page) makes the decoder complain on stderr.
"""
from __future__ import annotations

import shutil
import signal
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.server import SOURCE_PASSWORD, FanoutProcess

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")

# Encoder arguments per codec. Vorbis is forced to a steady 128 kbit/s: left to VBR it
# squeezes a pure tone to ~25 kbit/s and the stream would take ages to leave a burst window.
ENCODERS = {
    "mp3": ("-c:a", "libmp3lame", "-b:a", "128k", "-f", "mp3"),
    "vorbis": ("-c:a", "libvorbis", "-b:a", "128k", "-minrate", "128k", "-maxrate", "128k",
               "-f", "ogg"),
    "opus": ("-c:a", "libopus", "-b:a", "96k", "-f", "ogg"),
    "aac": ("-c:a", "aac", "-b:a", "96k", "-f", "adts"),
}
# Length of the generated tone: longer than any test streams (tests end it with `end()`).
MAX_SECONDS = 60
# ffmpeg's exit status after a clean stop on SIGINT (255), or at the end of its input (0).
STOPPED_OK = (0, 255)
# Sample rate and channels captures are decoded to, to count the seconds they hold.
DECODE_RATE = 48000
DECODE_BYTES_PER_SECOND = DECODE_RATE * 2  # mono s16le


class FfmpegSource:
    """`ffmpeg -re` streaming a 440 Hz tone to `mount` as a source client until `end()`."""

    def __init__(self, server: FanoutProcess, mount: str, codec: str, content_type: str,
                 ice: dict[str, str] | None = None, tags: dict[str, str] | None = None) -> None:
        """`ice`: ffmpeg's icecast options (ice_name …); `tags`: the stream's own metadata
        (-metadata: Vorbis/Opus comments, for Ogg)."""
        options = [arg for name, value in (ice or {}).items() for arg in (f"-{name}", value)]
        options += [arg for name, value in (tags or {}).items()
                    for arg in ("-metadata", f"{name}={value}")]
        self.cmd = [
            "ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-re",
            "-f", "lavfi", "-i", f"sine=frequency=440:duration={MAX_SECONDS}",
            *ENCODERS[codec], "-content_type", content_type, *options,
            f"icecast://source:{SOURCE_PASSWORD}@{server.host}:{server.port}{mount}",
        ]
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)

    def end(self) -> None:
        """Stop the way a broadcaster does (SIGINT): ffmpeg flushes the encoder, writes the
        last whole frames (for Ogg the EOS page) and hangs up. AssertionError if it failed."""
        self.proc.send_signal(signal.SIGINT)
        try:
            _, errors = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError("ffmpeg did not stop on SIGINT") from None
        assert self.proc.returncode in STOPPED_OK and not errors, f"ffmpeg failed: {errors}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()

    def __enter__(self) -> "FfmpegSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class Decoded:
    seconds: float  # audio the capture decoded to
    errors: str  # everything the decoder said at level "error" (empty: a clean stream)


def decode(capture: bytes, path: Path) -> Decoded:
    """Decode `capture` (kept at `path` for a post-mortem) with ffmpeg."""
    path.write_bytes(capture)
    result = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-i", str(path),
         "-f", "s16le", "-ac", "1", "-ar", str(DECODE_RATE), "pipe:1"],
        capture_output=True, check=False)
    errors = result.stderr.decode(errors="replace")
    if result.returncode:
        errors += f"\n(ffmpeg exited with status {result.returncode})"
    return Decoded(len(result.stdout) / DECODE_BYTES_PER_SECOND, errors)


@dataclass(frozen=True)
class OggPage:
    flags: int  # 0x02 BOS, 0x04 EOS, 0x01 continued packet
    granule: int
    serial: int
    sequence: int
    body: bytes

    @property
    def bos(self) -> bool:
        return bool(self.flags & 0x02)

    @property
    def eos(self) -> bool:
        return bool(self.flags & 0x04)


def ogg_pages(data: bytes) -> list[OggPage]:
    """Every page of `data`; AssertionError unless `data` is whole pages back to back."""
    pages, pos = [], 0
    while pos < len(data):
        assert data[pos:pos + 4] == b"OggS", f"no Ogg page at byte {pos}"
        flags = data[pos + 5]
        granule, serial, sequence = struct.unpack_from("<qII", data, pos + 6)
        segments = data[pos + 27:pos + 27 + data[pos + 26]]
        start = pos + 27 + len(segments)
        end = start + sum(segments)
        assert end <= len(data), f"the Ogg page at byte {pos} is cut short"
        pages.append(OggPage(flags, granule, serial, sequence, data[start:end]))
        pos = end
    return pages
