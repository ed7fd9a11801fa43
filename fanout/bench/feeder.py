"""The source feeder: PUT source clients sending the self-identifying stream.

Theory of operation. ``open_source`` connects, sends the PUT head with ``Expect:
100-continue`` and reads responses until the final one (Icecast 2.4.4 answers ``100
Continue`` after authentication, then ``HTTP/1.0 200 OK``, PROTOCOL.md §4.3); anything
but 200 raises ``SourceRefused``. ``Feeder`` feeds one or many such sources from one
thread (hundreds of Python threads would cost more than some servers under test).

Paced sources (``bitrate`` set): source ``j``'s frame ``k`` is due at ``start_j + k·384·8
/ bitrate``; the starts are spread over one write interval so the writes of many sources
interleave, and each write carries ``write_frames`` frames stamped with their send time
(1 frame is what encoders do: ~40 small writes a second). A late thread catches up in
one write of at most ``MAX_CATCH_UP_FRAMES``. Unpaced sources (``bitrate=None``) write
large batches whenever their socket is writable. Sockets are non-blocking: what the
server did not take yet waits in ``pending`` and goes first. With ``reconnect``, a
source whose connection broke (its worker was killed) connects again from a helper
thread and skips the frames it missed, as a live encoder would; without it the source
stays down and its error is reported. ``stop()`` ends the thread, closes the
connections and returns what was sent.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from fanout.bench import payload
from fanout.bench.serving import basic_auth

HANDSHAKE_TIMEOUT = 10.0  # s for the server to answer the PUT head
IN_USE_RETRY = 5.0  # s to retry a "mount in use" 403 (the previous source may still be leaving)
RETRY_INTERVAL = 0.05
FAST_BATCH_FRAMES = 256  # ~96 KiB per write when sending as fast as accepted
MAX_CATCH_UP_FRAMES = 64  # frames sent in one write by a paced feeder that fell behind
HEAD_LIMIT = 16_384
# Writes due within this many ns go out together: waking up for each of thousands of
# writes a second would cost the bench more than the writes.
PACING_RESOLUTION_NS = 2_000_000
FAST_POLL = 0.05  # s an unpaced feeder waits for writability before checking for stop
RECONNECT_INTERVAL = 0.25  # s between two attempts of a source to connect again


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
    error: str | None  # why a connection ended early, if one did (and was not reconnected)
    reconnections: int = 0


class SourceRefused(RuntimeError):
    """The server answered the PUT with something other than 200."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"source refused: {status} {reason}")
        self.status = status


def put_head(spec: SourceSpec) -> bytes:
    """Return the PUT request head for ``spec``."""
    kbps = (spec.bitrate or payload.BITRATE) // 1000
    lines = [
        f"PUT {spec.mount} HTTP/1.1",
        f"Host: {spec.host}:{spec.port}",
        f"Authorization: {basic_auth(spec.user, spec.password)}",
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


class _Source:
    """One source connection of a Feeder and where its stream is."""

    def __init__(self, spec: SourceSpec, start_ns: int, buffer_frames: int) -> None:
        self.spec = spec
        self.start_ns = start_ns  # frame k of a paced source is due at start_ns + k·frame_ns
        self.sock: socket.socket | None = None  # None: not connected (yet, or any more)
        self.frames = 0  # the counter of the next frame
        self.frames_sent = 0
        self.bytes_sent = 0
        self.pending: memoryview | None = None  # written but not yet taken by the server
        self.buf = bytearray(buffer_frames * payload.FRAME_SIZE)
        self.reconnecting = False


class Feeder:
    """Sources of the self-identifying stream, all fed from one thread.

    ``specs`` share one bitrate (None: as fast as accepted). ``write_frames``: frames
    per paced write. ``reconnect``: a broken source connects again (see the module
    docstring)."""

    def __init__(self, specs: Sequence[SourceSpec], write_frames: int = 1,
                 reconnect: bool = False) -> None:
        bitrates = {spec.bitrate for spec in specs}
        if len(bitrates) != 1 or write_frames < 1:
            raise ValueError("a Feeder needs sources of one bitrate and write_frames >= 1")
        self.bitrate = bitrates.pop()
        self.write_frames = write_frames
        self.reconnect = reconnect
        self.reconnections = 0
        self._specs = list(specs)
        self._sources: list[_Source] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: str | None = None
        self._t_start = 0.0
        self._t_end = 0.0

    @property
    def _frame_ns(self) -> float:
        return payload.FRAME_SIZE * 8 * 1_000_000_000 / (self.bitrate or payload.BITRATE)

    def start(self) -> None:
        """Start the thread and connect every source; raise SourceRefused (after
        stopping) if the server refuses one, OSError if one cannot connect."""
        from fanout.bench import _swarm  # noqa: PLC0415 - compiled frame writer

        self._fill = _swarm.fill_frames
        t0 = time.monotonic_ns()
        slot_ns = self.write_frames * self._frame_ns / len(self._specs)
        frames = FAST_BATCH_FRAMES if self.bitrate is None else MAX_CATCH_UP_FRAMES
        self._sources = [_Source(spec, t0 + int(j * slot_ns), frames)
                         for j, spec in enumerate(self._specs)]
        self._t_start = time.monotonic()
        self._thread = threading.Thread(target=self._run, args=(t0,), name="bench-feeder",
                                        daemon=True)
        self._thread.start()
        try:
            for source in self._sources:
                self._connect(source)
        except BaseException:
            self.stop()
            raise

    def bytes_sent(self) -> int:
        """Return the bytes the server has taken so far."""
        return sum(source.bytes_sent for source in self._sources)

    def connected(self) -> int:
        """Return how many sources are connected now."""
        return sum(source.sock is not None for source in self._sources)

    def stop(self) -> FeederStats:
        """Stop sending, close the connections and return what was sent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for source in self._sources:
            sock, source.sock = source.sock, None
            if sock is not None:
                sock.close()
        seconds = (self._t_end or time.monotonic()) - self._t_start
        return FeederStats(sum(s.frames_sent for s in self._sources), self.bytes_sent(),
                           seconds, self._error, self.reconnections)

    def _connect(self, source: _Source) -> None:
        sock = open_source_retrying(source.spec)
        sock.setblocking(False)
        source.pending = None
        if self.bitrate is not None:  # a live encoder does not send what it missed
            missed = (time.monotonic_ns() - source.start_ns) // self._frame_ns
            source.frames = max(source.frames, int(missed))
        if self._stop.is_set():
            sock.close()
            return
        source.sock = sock  # last: the feeding thread uses a source once this is set

    def _reconnect(self, source: _Source) -> None:
        while not self._stop.is_set():
            try:
                self._connect(source)
            except (SourceRefused, OSError):
                self._stop.wait(RECONNECT_INTERVAL)
                continue
            self.reconnections += 1
            break
        source.reconnecting = False

    def _lost(self, source: _Source, exc: OSError) -> None:
        """The server broke ``source``'s connection: reconnect, or report it."""
        sock, source.sock = source.sock, None
        if sock is not None:
            sock.close()
        if self._stop.is_set():
            return
        if not self.reconnect:
            self._error = self._error or f"{source.spec.mount}: {type(exc).__name__}: {exc}"
            return
        if not source.reconnecting:
            source.reconnecting = True
            threading.Thread(target=self._reconnect, args=(source,), daemon=True).start()

    def _run(self, t0: int) -> None:
        try:
            if self.bitrate is None:
                self._run_fast()
            else:
                self._run_paced(t0)
        finally:
            self._t_end = time.monotonic()

    def _run_paced(self, t0: int) -> None:
        count = len(self._sources)
        slot_ns = self.write_frames * self._frame_ns / count
        slot = 0  # write slot k is source k % count's turn, due at t0 + k·slot_ns
        while not self._stop.is_set():
            now = time.monotonic_ns()
            behind = int((now - t0) / slot_ns) - slot
            if behind > count:  # far behind: one round of turns catches every source up
                slot += behind - count
            while t0 + slot * slot_ns <= now:
                self._feed_paced(self._sources[slot % count], now)
                slot += 1
            wait_ns = max(t0 + slot * slot_ns - time.monotonic_ns(), PACING_RESOLUTION_NS)
            self._stop.wait(wait_ns / 1e9)

    def _feed_paced(self, source: _Source, now: int) -> None:
        if source.sock is None or not self._flush(source):
            return
        due = int((now - source.start_ns) // self._frame_ns) + 1 - source.frames
        if due >= self.write_frames:
            self._write(source, min(due, MAX_CATCH_UP_FRAMES))

    def _run_fast(self) -> None:
        while not self._stop.is_set():
            socks = {source.sock: source for source in self._sources if source.sock is not None}
            if not socks:
                self._stop.wait(FAST_POLL)
                continue
            _, writable, _ = select.select([], list(socks), [], FAST_POLL)
            for sock in writable:
                source = socks[sock]
                if self._flush(source):
                    self._write(source, FAST_BATCH_FRAMES)

    def _flush(self, source: _Source) -> bool:
        """Send what the server did not take yet; return whether nothing is left."""
        if source.pending is None:
            return True
        source.pending = self._send(source, source.pending)
        return source.pending is None

    def _write(self, source: _Source, count: int) -> None:
        view = memoryview(source.buf)[:count * payload.FRAME_SIZE]
        self._fill(view, source.frames, time.monotonic_ns())
        source.frames += count
        source.frames_sent += count
        source.pending = self._send(source, view)

    def _send(self, source: _Source, data: memoryview) -> memoryview | None:
        """Send ``data`` without blocking; return what is left (None: all of it went)."""
        assert source.sock is not None
        try:
            sent = source.sock.send(data)
        except BlockingIOError:
            return data
        except OSError as exc:
            self._lost(source, exc)
            return None
        source.bytes_sent += sent
        return data[sent:] if sent < len(data) else None
