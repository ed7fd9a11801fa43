"""Real socket clients for tests: a test-pattern source, listeners, raw requests, and a
source of one repeated byte (to tell two streams apart)."""
from __future__ import annotations

import base64
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from tests.support.server import SOURCE_PASSWORD
from tests.support.waiting import wait_for

# The test pattern: the stream is the big-endian u64 sequence 0, 1, 2, …, so any slice of
# it says where it came from, and a gap, duplicate or torn byte cannot go unnoticed.
WORD = 8


def pattern(start: int, length: int) -> bytes:
    """Bytes [start, start+length) of the test pattern."""
    first, last = start // WORD, (start + length + WORD - 1) // WORD
    words = b"".join(struct.pack(">Q", n) for n in range(first, last))
    offset = start - first * WORD
    return words[offset:offset + length]


def locate_in_pattern(data: bytes) -> int:
    """Stream position at which `data` starts if it is an exact slice of the pattern.

    Raises AssertionError (naming the first bad offset) if it is not."""
    assert len(data) >= 2 * WORD, f"only {len(data)} bytes received"
    for skew in range(WORD):
        (word,) = struct.unpack(">Q", data[skew:skew + WORD])
        start = word * WORD - skew
        if start >= 0 and data[:64] == pattern(start, min(64, len(data))):
            expected = pattern(start, len(data))
            if data != expected:
                bad = next(i for i in range(len(data)) if data[i] != expected[i])
                raise AssertionError(f"stream diverges from the pattern at byte {bad} "
                                     f"(stream position {start + bad})")
            return start
    raise AssertionError("data does not start on any pattern alignment")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# Most bytes read_all takes: an answer that turns out to be an endless stream (a request
# served as a listener by mistake) fails the test instead of hanging it.
READ_ALL_LIMIT = 4 * 1024 * 1024


def raw_request(host: str, port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes, return everything the server answers until it closes."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(data)
        return read_all(sock)


def read_all(sock: socket.socket) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        assert size <= READ_ALL_LIMIT, f"the answer did not end after {size} bytes: {b''.join(chunks)[:200]!r}"
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """(head, bytes after it) of a response."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise AssertionError(f"connection closed during the head: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head + b"\r\n\r\n", rest


class Source:
    """A source client speaking SOURCE or PUT; `send` pushes bytes, `close` ends it."""

    def __init__(self, host: str, port: int, mount: str, *, content_type: str | None =
                 "application/octet-stream", method: str = "PUT", password: str = SOURCE_PASSWORD,
                 user: str = "source", headers: dict[str, str] | None = None,
                 version: str = "HTTP/1.1", expect_continue: bool = False) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        lines = [f"{method} {mount} {version}", f"Host: {host}:{port}",
                 f"Authorization: {basic(user, password)}", "User-Agent: fanout-tests"]
        if content_type:
            lines.append(f"Content-Type: {content_type}")
        if expect_continue:
            lines.append("Expect: 100-continue")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.response = self._read_response(expect_continue)
        self.sent = 0

    def _read_response(self, expect_continue: bool) -> bytes:
        data = b""
        wanted = 2 if expect_continue else 1
        while data.count(b"\r\n\r\n") < wanted:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            data += chunk
            if not data.startswith(b"HTTP/1.1 100") and b"\r\n\r\n" in data:
                break
        return data

    @property
    def accepted(self) -> bool:
        return b"HTTP/1.0 200 OK\r\n\r\n" in self.response

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)
        self.sent += len(data)

    def send_pattern(self, length: int, chunk: int = 4096, pace: float = 0.0) -> None:
        """Send the next `length` pattern bytes, optionally pausing `pace` s per chunk."""
        end = self.sent + length
        while self.sent < end:
            self.send(pattern(self.sent, min(chunk, end - self.sent)))
            if pace:
                time.sleep(pace)  # pacing a producer, not synchronisation

    def close(self) -> None:
        self.sock.close()


@dataclass
class Listener:
    """A listener reading in a background thread until the server closes the stream."""

    host: str
    port: int
    mount: str
    icy: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    head: bytes = b""
    body: bytearray = field(default_factory=bytearray)
    closed: threading.Event = field(default_factory=threading.Event)
    read_size: int = 65536

    def start(self) -> "Listener":
        self.sock = socket.create_connection((self.host, self.port), timeout=30)
        lines = [f"GET {self.mount} HTTP/1.0", "User-Agent: fanout-test-listener"]
        if self.icy:
            lines.append("Icy-MetaData: 1")
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.head, rest = read_head(self.sock)
        self.body += rest
        self.local_port = self.sock.getsockname()[1]
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        try:
            while True:
                chunk = self.sock.recv(self.read_size)
                if not chunk:
                    break
                self.body += chunk
        except OSError:
            pass
        finally:
            self.closed.set()

    def header(self, name: str) -> str | None:
        for line in self.head.decode("latin-1").split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def split_icy(body: bytes, metaint: int) -> tuple[bytes, list[bytes]]:
    """Separate audio and ICY blocks (each block with its length byte)."""
    audio, blocks, pos = bytearray(), [], 0
    while pos < len(body):
        audio += body[pos:pos + metaint]
        pos += metaint
        if pos >= len(body):
            break
        length = 1 + 16 * body[pos]
        blocks.append(bytes(body[pos:pos + length]))
        pos += length
    return bytes(audio), blocks


# -- a second kind of stream: one repeated byte -------------------------------------------

FILL = b"\xaa"


class Feeding:
    """Calls `write()` every `pace` s from a thread until `close` (a producer's pacing, not
    synchronisation); a write failing with OSError (the server hung up) ends it."""

    def __init__(self, write: Callable[[], None], pace: float) -> None:
        self.write, self.pace = write, pace
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while not self.stopping.is_set():
                self.write()
                time.sleep(self.pace)  # pacing a producer, not synchronisation
        except OSError:
            pass

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)


class PacedSource:
    """A source sending `chunk` pattern bytes every `pace` s from a thread until `close`."""

    def __init__(self, server: Any, mount: str, chunk: int = 4096, pace: float = 0.01,
                 content_type: str = "application/octet-stream") -> None:
        self.source = Source(server.host, server.port, mount, content_type=content_type)
        assert self.source.accepted, self.source.response
        self.feeding = Feeding(lambda: self.source.send_pattern(chunk), pace)

    @property
    def sent(self) -> int:
        return self.source.sent

    def close(self) -> None:
        self.feeding.close()
        self.source.close()


class FillSource:
    """A source sending FILL bytes from a thread until `close`."""

    def __init__(self, server: Any, mount: str,
                 content_type: str = "application/octet-stream") -> None:
        self.source = Source(server.host, server.port, mount, content_type=content_type)
        assert self.source.accepted, self.source.response
        self.feeding = Feeding(lambda: self.source.send(FILL * 4096), 0.01)

    def close(self) -> None:
        self.feeding.close()
        self.source.close()


def fill_after(listener: Listener, mark: int, amount: int = 16 * 1024) -> bool:
    """Whether `amount` FILL bytes arrived after byte `mark` of the body."""
    return bytes(listener.body[mark:]).count(FILL * 64) * 64 >= amount


def pattern_tail(listener: Listener, amount: int = 16 * 1024) -> bool:
    """Whether the last `amount` bytes received are one slice of the pattern."""
    tail = bytes(listener.body[-amount:])
    if len(tail) < amount:
        return False
    try:
        locate_in_pattern(tail)
    except (AssertionError, ValueError):
        return False
    return True


def assert_kept_through(listener: Listener, stop: Any, timeout: float = 10) -> None:
    """`listener` gets the pattern; once `stop()` ends that stream it gets FILL bytes on
    the same connection (it was moved, not dropped)."""
    wait_for(lambda: pattern_tail(listener), timeout, "the pattern stream")
    stop()
    mark = len(listener.body)
    wait_for(lambda: fill_after(listener, mark), timeout, "FILL bytes on the same connection")
    assert not listener.closed.is_set()


def status_and_body(answer: bytes) -> tuple[bytes, bytes]:
    """(status line, body) of a whole answer."""
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], body


def serving(server: Any, mount: str) -> bool:
    """Whether `mount` answers a new listener with 200 (the probe is closed at once)."""
    probe = Listener(server.host, server.port, mount).start()
    probe.close()
    return probe.head.startswith(b"HTTP/1.0 200")
