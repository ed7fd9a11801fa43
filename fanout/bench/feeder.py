"""The source feeder: one ``PUT`` source client sending the self-identifying stream.

Theory of operation. ``Feeder.start()`` connects, sends the PUT head with
``Expect: 100-continue`` and reads responses until the final one (Icecast 2.4.4
answers ``100 Continue`` after authentication, then ``HTTP/1.0 200 OK``, PROTOCOL.md
§4.3); anything but 200 raises ``SourceRefused``. A thread then sends frames stamped
with their send time: paced at ``bitrate`` (frame ``k`` is due at ``start + k·384·8 /
bitrate``; a late sender catches up in one write), or, with ``bitrate=None``, in large
batches as fast as the server accepts them. ``stop()`` ends the thread, closes the
connection and returns what was sent.
"""

from __future__ import annotations

import base64
import socket
import threading
import time
from dataclasses import dataclass

from fanout.bench import payload

HANDSHAKE_TIMEOUT = 10.0  # s for the server to answer the PUT head
IN_USE_RETRY = 5.0  # s to retry a "mount in use" 403 (the previous source may still be leaving)
RETRY_INTERVAL = 0.05
FAST_BATCH_FRAMES = 256  # ~96 KiB per write when sending as fast as accepted
MAX_CATCH_UP_FRAMES = 64  # frames sent in one write by a paced feeder that fell behind
HEAD_LIMIT = 16_384


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """Where and how to feed; ``bitrate`` None sends as fast as the server accepts."""

    host: str
    port: int
    mount: str
    password: str
    user: str = "source"
    bitrate: int | None = payload.BITRATE
    name: str = "fanout bench"


@dataclass(frozen=True, slots=True)
class FeederStats:
    frames: int
    bytes: int
    seconds: float
    error: str | None  # why the connection ended early, if it did


class SourceRefused(RuntimeError):
    """The server answered the PUT with something other than 200."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"source refused: {status} {reason}")
        self.status = status


def put_head(spec: SourceSpec) -> bytes:
    """Return the PUT request head for ``spec``."""
    credentials = base64.b64encode(f"{spec.user}:{spec.password}".encode()).decode()
    kbps = (spec.bitrate or payload.BITRATE) // 1000
    lines = [
        f"PUT {spec.mount} HTTP/1.1",
        f"Host: {spec.host}:{spec.port}",
        f"Authorization: Basic {credentials}",
        "User-Agent: fanout-bench-feeder/1",
        "Content-Type: audio/mpeg",
        f"Ice-Name: {spec.name}",
        "Ice-Public: 0",
        f"Ice-Audio-Info: bitrate={kbps};samplerate=48000;channels=1",
        "Expect: 100-continue",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def parse_status(head: bytes) -> tuple[int, str]:
    """Return (status, reason) of a response head; raise ValueError if unparsable."""
    parts = head.split(b"\r\n", 1)[0].split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise ValueError(f"bad response head: {head[:80]!r}")
    return int(parts[1]), (parts[2] if len(parts) > 2 else b"").decode("latin-1")


def _read_head(sock: socket.socket, buffered: bytes) -> tuple[bytes, bytes]:
    """Return one response head and the bytes read past it."""
    data = buffered
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk or len(data) > HEAD_LIMIT:
            raise ConnectionError(f"connection closed during the response head: {data[:80]!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def open_source(spec: SourceSpec) -> socket.socket:
    """Connect and complete the PUT handshake; return the socket ready for audio.

    Raises SourceRefused (non-200 answer), OSError / ConnectionError (network).
    """
    sock = socket.create_connection((spec.host, spec.port), timeout=HANDSHAKE_TIMEOUT)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(put_head(spec))
        rest = b""
        while True:
            head, rest = _read_head(sock, rest)
            status, reason = parse_status(head)
            if status != 100:
                break
        if status != 200:
            body = rest + _read_some(sock)
            raise SourceRefused(status, (reason + " " + body.decode("latin-1")).strip())
        sock.settimeout(None)
        return sock
    except BaseException:
        sock.close()
        raise


def _read_some(sock: socket.socket) -> bytes:
    try:
        sock.settimeout(0.5)
        return sock.recv(1024)
    except OSError:
        return b""


def open_source_retrying(spec: SourceSpec) -> socket.socket:
    """``open_source``, retrying for a while when the mount is still in use (403)."""
    deadline = time.monotonic() + IN_USE_RETRY
    while True:
        try:
            return open_source(spec)
        except SourceRefused as refused:
            if refused.status != 403 or "in use" not in str(refused) or time.monotonic() > deadline:
                raise
        time.sleep(RETRY_INTERVAL)  # polling a condition with a deadline


class Feeder:
    """One source connection fed from a thread."""

    def __init__(self, spec: SourceSpec) -> None:
        self.spec = spec
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._frames = 0
        self._error: str | None = None
        self._t_start = 0.0
        self._t_end = 0.0

    def start(self) -> None:
        """Connect (raising on refusal) and start sending."""
        from fanout.bench import _swarm  # noqa: PLC0415 - compiled frame writer

        self._fill = _swarm.fill_frames
        self._sock = open_source_retrying(self.spec)
        self._t_start = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="bench-feeder", daemon=True)
        self._thread.start()

    def bytes_sent(self) -> int:
        """Return the bytes sent so far."""
        return self._frames * payload.FRAME_SIZE

    def alive(self) -> bool:
        """Whether the connection is still being fed."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> FeederStats:
        """Stop sending, close the connection and return what was sent."""
        self._stop.set()
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)  # unblocks a sendall stuck on a full buffer
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join()
        if self._sock is not None:
            self._sock.close()
        seconds = (self._t_end or time.monotonic()) - self._t_start
        return FeederStats(self._frames, self._frames * payload.FRAME_SIZE, seconds, self._error)

    def _run(self) -> None:
        try:
            if self.spec.bitrate:
                self._send_paced(self.spec.bitrate)
            else:
                self._send_fast()
        except OSError as exc:
            if not self._stop.is_set():
                self._error = f"{type(exc).__name__}: {exc}"
        finally:
            self._t_end = time.monotonic()

    def _send_batch(self, buf: bytearray, count: int) -> None:
        assert self._sock is not None
        view = memoryview(buf)[:count * payload.FRAME_SIZE]
        self._fill(view, self._frames, time.monotonic_ns())
        self._sock.sendall(view)
        self._frames += count

    def _send_paced(self, bitrate: int) -> None:
        frame_ns = payload.FRAME_SIZE * 8 * 1_000_000_000 / bitrate
        buf = bytearray(MAX_CATCH_UP_FRAMES * payload.FRAME_SIZE)
        start = time.monotonic_ns()
        while not self._stop.is_set():
            due = int((time.monotonic_ns() - start) / frame_ns) + 1 - self._frames
            if due <= 0:
                wait_ns = start + self._frames * frame_ns - time.monotonic_ns()
                self._stop.wait(max(wait_ns, 0) / 1e9)
                continue
            self._send_batch(buf, min(due, MAX_CATCH_UP_FRAMES))

    def _send_fast(self) -> None:
        buf = bytearray(FAST_BATCH_FRAMES * payload.FRAME_SIZE)
        while not self._stop.is_set():
            self._send_batch(buf, FAST_BATCH_FRAMES)
