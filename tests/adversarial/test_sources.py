"""Sources that misbehave cost only themselves: an over-long mount name (from a client or
from the config), a chunked body (well or badly framed), a transfer coding nobody sends, a
worker stopped under a source.

Each test runs against one real fanout (two workers), asserts the exact answer and log
line, and that a Bystander (another source and its listeners) is untouched.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fanout.protocol.mount_name import MAX_MOUNT_BYTES
from tests.support.clients import (
    Listener, Source, basic, locate_in_pattern, pattern, read_all, read_head,
)
from tests.support.media import decode, needs_ffmpeg
from tests.support.server import (
    SOURCE_PASSWORD, icecast_xml, start_fanout, worker_of,
)
from tests.support.waiting import wait_for
from tests.support.clients import serving, status_and_body
from tests.support.logfiles import messages

needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")

# The mount whose source's worker gets stopped, with a source-timeout of its own.
STOPPED_MOUNT = "/stopped"
STOPPED_TIMEOUT = 1
# The fault: how long that worker is stopped, well over its source-timeout.
STOPPED_FOR = 3 * STOPPED_TIMEOUT

# The Bystander's listeners on the stopped worker fall behind its source (on the other
# worker, ~400 KB/s) while it is stopped: its queue-size lets them lag ~10 s, not ~1 s.
MOUNTS = f"""<mount><mount-name>{STOPPED_MOUNT}</mount-name>
  <source-timeout>{STOPPED_TIMEOUT}</source-timeout></mount>
<mount><mount-name>/bystander</mount-name><queue-size>4000000</queue-size></mount>"""
# A mount name over the limit where the config names it: a relay's local mount, the
# mount of a Shoutcast socket (a Shoutcast source cannot name its mount).
LONG_MOUNT = "/" + "r" * MAX_MOUNT_BYTES

TOO_LONG_BODY = (b"<html><head><title>Error 400</title></head><body><b>400 - Mount name too "
                 b"long (limit 254 bytes)</b></body></html>\r\n")


@pytest.fixture(scope="module")
def logdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("source-logs")


@pytest.fixture(scope="module")
def server(logdir):
    srv = start_fanout(icecast_xml(sources=16, mounts=MOUNTS, extra=(
        f"<paths><logdir>{logdir}</logdir></paths>")), logdir, workers=2)
    yield srv
    assert srv.stop() == 0, srv.output()


# -- mount-name length ----------------------------------------------------------------------

def test_a_mount_name_over_the_limit_is_refused_with_400_naming_it(server, logdir, bystander):
    name = "/" + "x" * MAX_MOUNT_BYTES  # one byte over
    for _ in range(2):  # a second one stopped the whole server before
        source = Source(server.host, server.port, name)
        answer = source.response + read_all(source.sock)
        assert status_and_body(answer) == (b"HTTP/1.0 400 Bad Request", TOO_LONG_BODY)
    line = "127.0.0.1: Mount name too long (limit 254 bytes) (400)"
    wait_for(lambda: messages(logdir, "fanout.client").count(line) == 2, 5, "one line per refusal")


@pytest.mark.parametrize("element, path", ids=["relay local-mount", "shoutcast-mount"], argvalues=[
    (f"<relay><port>8001</port><mount>/up</mount><local-mount>{LONG_MOUNT}</local-mount></relay>",
     "icecast/relay[1]/local-mount"),
    (f"<listen-socket><port>8001</port><shoutcast-mount>{LONG_MOUNT}</shoutcast-mount>"
     "</listen-socket>", "icecast/listen-socket[2]/shoutcast-mount"),
])
def test_a_configured_mount_over_the_limit_is_a_config_error(tmp_path, element, path):
    """Every claim of it would be refused: the config says so before anything starts."""
    config = tmp_path / "icecast.xml"
    config.write_text(icecast_xml(extra=element))
    result = subprocess.run([sys.executable, "-m", "fanout", "-c", str(config), "--check-config"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.startswith(f"fanout: config error: {path}: '/rrrr")  # value cut short
    assert result.stderr.endswith(
        f"' is not valid: expected a mount name of at most {MAX_MOUNT_BYTES} bytes\n")


def raw_get(server, mount: str) -> bytes:
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(f"GET {mount} HTTP/1.0\r\n\r\n".encode())
        return read_all(sock)


def test_the_longest_mount_name_streams(server, bystander):
    name = "/" + "y" * (MAX_MOUNT_BYTES - 1)  # 254 bytes: its ring's memfd name is cut
    source = Source(server.host, server.port, name)
    assert source.accepted, source.response
    source.send_pattern(16 * 1024)
    wait_for(lambda: serving(server, name), 5, "the mount to serve")
    listener = Listener(server.host, server.port, name).start()
    source.send_pattern(256 * 1024, chunk=16384, pace=0.002)
    total = source.sent
    source.close()
    assert listener.closed.wait(10), "the listener was not closed after the source left"
    assert locate_in_pattern(bytes(listener.body)) + len(listener.body) == total


# -- chunked bodies -------------------------------------------------------------------------

@needs_curl
def test_curl_streaming_chunked_reaches_listeners_without_its_framing(server, logdir, bystander):
    mount = "/curl"
    curl = subprocess.Popen(
        ["curl", "-sS", "-T", "-", "-H", "Content-Type: application/octet-stream",
         f"http://source:{SOURCE_PASSWORD}@{server.host}:{server.port}{mount}"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert curl.stdin is not None
    sent = 0

    def feed(length: int) -> None:  # curl sends each read from its stdin as one chunk
        nonlocal sent
        curl.stdin.write(pattern(sent, length))
        curl.stdin.flush()
        sent += length

    try:
        feed(16 * 1024)
        wait_for(lambda: serving(server, mount), 10, "curl's mount to serve")
        listener = Listener(server.host, server.port, mount).start()
        for _ in range(64):
            feed(4096 + 7)  # odd sizes: chunk boundaries fall anywhere in the pattern
        curl.stdin.close()  # curl sends the last chunk, 0 CRLF CRLF
        assert curl.wait(10) == 0, curl.stderr.read() if curl.stderr else ""
    finally:
        if curl.poll() is None:
            curl.kill()
    assert listener.closed.wait(10), "the listener was not closed after curl's body ended"
    assert locate_in_pattern(bytes(listener.body)) + len(listener.body) == sent
    wait_for(lambda: f"127.0.0.1: source on {mount} ended its chunked body"
             in messages(logdir, "fanout.source"), 5, "the end of body line")


@needs_ffmpeg
def test_ffmpeg_http_put_streams_chunked_mp3_that_decodes_cleanly(server, bystander, tmp_path):
    mount = "/ffmpeg-chunked.mp3"
    ffmpeg = subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-re",
         "-f", "lavfi", "-i", "sine=frequency=440:duration=60", "-c:a", "libmp3lame",
         "-b:a", "128k", "-f", "mp3", "-content_type", "audio/mpeg",
         "-method", "PUT", "-auth_type", "basic", "-chunked_post", "1",
         f"http://source:{SOURCE_PASSWORD}@{server.host}:{server.port}{mount}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: serving(server, mount), 10, "ffmpeg's mount to serve")
        listener = Listener(server.host, server.port, mount).start()
        wait_for(lambda: len(listener.body) >= 48 * 1024, 10, "3 s of audio")  # 128 kbit/s
        listener.close()
    finally:
        ffmpeg.send_signal(signal.SIGINT)
        ffmpeg.communicate(timeout=10)
    capture = bytes(listener.body)
    assert not re.search(rb"\r\n[0-9a-fA-F]{1,8}\r\n", capture), "chunk framing in the audio"
    decoded = decode(capture, tmp_path / "capture.mp3")
    assert decoded.errors == "" and decoded.seconds >= 2.5, decoded


def chunked_put(server, mount: str, transfer_encoding: str = "chunked") -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=10)
    sock.sendall(f"PUT {mount} HTTP/1.1\r\nAuthorization: {basic('source', SOURCE_PASSWORD)}\r\n"
                 f"Content-Type: audio/mpeg\r\nTransfer-Encoding: {transfer_encoding}\r\n\r\n"
                 .encode())
    return sock


def test_bad_chunk_framing_ends_that_source_with_one_log_line(server, logdir, bystander):
    mount = "/badly-chunked"
    sock = chunked_put(server, mount)
    assert read_head(sock)[0] == b"HTTP/1.0 200 OK\r\n\r\n"
    sock.sendall(b"10\r\n" + pattern(0, 16) + b"\r\nzz\r\n")
    assert read_all(sock) == b""  # closed, nothing more said
    line = (f"127.0.0.1: source on {mount} sent bad chunked framing "
            f"(bad chunk size line b'zz'); disconnected")
    wait_for(lambda: messages(logdir, "fanout.source").count(line) == 1, 5, "one log line")
    # The worker logs first, then tells the supervisor: the mount is free once it says so.
    wait_for(lambda: f"source on {mount} ended" in messages(logdir, "fanout.supervisor"), 5,
             "the supervisor to release the mount")
    again = Source(server.host, server.port, mount)  # the mount was released
    assert again.accepted, again.response
    again.close()


def test_a_transfer_coding_other_than_chunked_is_refused_with_400(server, logdir, bystander):
    sock = chunked_put(server, "/gzipped", transfer_encoding="gzip, chunked")
    answer = read_all(sock)
    assert status_and_body(answer) == (
        b"HTTP/1.0 400 Bad Request",
        b"<html><head><title>Error 400</title></head><body><b>400 - Transfer-Encoding gzip, "
        b"chunked not supported</b></body></html>\r\n")
    line = "127.0.0.1: Transfer-Encoding gzip, chunked not supported (400)"
    wait_for(lambda: line in messages(logdir, "fanout.client"), 5, "the log line")


# -- a stopped worker -----------------------------------------------------------------------

def test_a_source_whose_worker_was_stopped_keeps_its_mount_and_listeners(server, logdir, bystander):
    source = Source(server.host, server.port, STOPPED_MOUNT)
    assert source.accepted, source.response
    stopping = threading.Event()

    def stream() -> None:  # ~160 KB/s, blocking while the worker is stopped
        while not stopping.is_set():
            source.send_pattern(4096)
            time.sleep(0.025)  # pacing a producer, not synchronisation

    feeder = threading.Thread(target=stream, daemon=True)
    feeder.start()
    try:
        wait_for(lambda: serving(server, STOPPED_MOUNT), 5, "the mount to serve")
        listener = Listener(server.host, server.port, STOPPED_MOUNT).start()
        worker = wait_for(lambda: worker_of(server, source.sock.getsockname()[1]), 5,
                          "the source's worker")
        os.kill(worker.pid, signal.SIGSTOP)
        try:
            time.sleep(STOPPED_FOR)  # the fault itself: the worker does not run
        finally:
            os.kill(worker.pid, signal.SIGCONT)
        mark = len(listener.body)
        wait_for(lambda: len(listener.body) >= mark + 64 * 1024 or listener.closed.is_set(), 10,
                 "the listener to get more of the stream")
        assert not listener.closed.is_set(), "the listener was cut"
    finally:
        stopping.set()
        feeder.join(10)
    assert not any(STOPPED_MOUNT in m and "sent nothing" in m
                   for m in messages(logdir, "fanout.source")), "the source was timed out"
    total = source.sent
    source.close()
    assert listener.closed.wait(10)
    assert locate_in_pattern(bytes(listener.body)) + len(listener.body) == total
