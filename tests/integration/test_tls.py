"""TLS served by the workers (issue 12 §4): `<listen-socket><ssl>1</ssl>` with
`<paths><ssl-certificate>`, certificates from a test CA made by openssl.

Real clients only: ffmpeg as a source over TLS, curl and ffprobe as listeners over TLS,
curl for admin, a Python TLS listener checking the byte stream exactly, openssl s_client
to see which certificate a new handshake gets. Every worker serves the TLS port (no TLS
thread): each worker handshakes on its own, and both take the new certificate on SIGHUP.
"""
from __future__ import annotations

import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.clients import Source, locate_in_pattern, read_head
from tests.support.media import ENCODERS, needs_ffmpeg
from tests.support.server import (
    ADMIN_PASSWORD, SOURCE_PASSWORD, FanoutProcess, icecast_xml, start_fanout, worker_of,
)
from tests.support.testca import Issued, TestCA
from tests.support.waiting import wait_for

TLS_LINE = re.compile(r"listening on https://127\.0\.0\.1:(\d+)/")
CLIENT_TIMEOUT = 20  # seconds a client process may take before the test fails
PROGRESS = 64 * 1024  # bytes a listener must receive after an event to show it goes on


def tls_config(certificate: Path, key: Path | None = None, extra: str = "") -> str:
    key_element = f"<ssl-private-key>{key}</ssl-private-key>" if key else ""
    return icecast_xml(extra=(
        "<listen-socket><port>0</port><bind-address>127.0.0.1</bind-address><ssl>1</ssl>"
        "</listen-socket>"
        f"<paths><ssl-certificate>{certificate}</ssl-certificate>{key_element}</paths>{extra}"))


def tls_port(server: FanoutProcess) -> int:
    match = TLS_LINE.search(server.output())
    assert match, server.output()
    return int(match.group(1))


@dataclass
class TlsListener:
    """A listener over TLS (Python's ssl, verifying against the test CA), reading in a
    thread until the server closes."""

    port: int
    mount: str
    ca: TestCA
    body: bytearray = field(default_factory=bytearray)
    closed: threading.Event = field(default_factory=threading.Event)

    def start(self) -> "TlsListener":
        context = ssl.create_default_context(cafile=str(self.ca.certificate))
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        self.sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
        self.local_port = raw.getsockname()[1] if raw.fileno() >= 0 else self.sock.getsockname()[1]
        self.sock.sendall(f"GET {self.mount} HTTP/1.0\r\nUser-Agent: tls-test\r\n\r\n".encode())
        self.head, rest = read_head(self.sock)  # type: ignore[arg-type]
        self.body += rest
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        try:
            while chunk := self.sock.recv(65536):
                self.body += chunk
        except OSError:
            pass
        finally:
            self.closed.set()

    def close(self) -> None:
        """Close once the reading thread has ended: closed under a thread that is between
        two reads, the fd number would be reused by the test's next socket, and the thread
        would read that one's TLS handshake away."""
        try:
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)  # the reader sees the end
        except OSError:
            pass  # the server closed it already
        wait_for(self.closed.is_set, READER_END, "the TLS listener's reader to end")
        self.sock.close()


# Seconds for a TLS listener's reading thread to see its socket shut down.
READER_END = 10


class PatternFeed:
    """A pattern source on the plain port, fed from a thread until `close`."""

    def __init__(self, server: FanoutProcess, mount: str) -> None:
        self.source = Source(server.host, server.port, mount)
        assert self.source.accepted, self.source.response
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while not self.stopping.is_set():
                self.source.send_pattern(4096, pace=0.01)  # pacing a producer
        except OSError:
            pass

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.source.close()


def serving_over(port: int, ca: TestCA, mount: str) -> bool:
    """Whether status-json.xsl, fetched over TLS, lists `mount`."""
    answer = subprocess.run(["curl", "-sS", "--cacert", str(ca.certificate),
                             f"https://127.0.0.1:{port}/status-json.xsl"],
                            capture_output=True, text=True, timeout=CLIENT_TIMEOUT)
    return answer.returncode == 0 and f'{mount}"' in answer.stdout


def subject_of_new_handshake(port: int, ca: TestCA) -> str:
    """The subject CN a new TLS client is shown (verified against the test CA)."""
    shown = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(ca.certificate),
         "-verify_return_error"], stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=CLIENT_TIMEOUT).stdout
    assert "Verify return code: 0 (ok)" in shown, shown
    match = re.search(r"subject=CN ?= ?([\w-]+)", shown)
    assert match, shown
    return match.group(1)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def server_cert(ca: TestCA) -> Issued:
    return ca.issue("server-one")


@pytest.fixture(scope="module")
def server(server_cert: Issued, tmp_path_factory: pytest.TempPathFactory):
    srv = start_fanout(tls_config(server_cert.combined), tmp_path_factory.mktemp("tls"), workers=2)
    yield srv
    assert srv.stop() == 0, srv.output()


# -- sources, listeners and admin over TLS -------------------------------------------------------


@needs_ffmpeg
def test_ffmpeg_source_over_tls_is_heard_by_curl_and_ffprobe_over_tls(server, ca):
    port = tls_port(server)
    ffmpeg = subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-re", "-f", "lavfi",
         "-i", "sine=frequency=440:duration=60", *ENCODERS["mp3"], "-content_type", "audio/mpeg",
         "-tls", "1", f"icecast://source:{SOURCE_PASSWORD}@127.0.0.1:{port}/tls.mp3"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: serving_over(port, ca, "/tls.mp3") or ffmpeg.poll() is not None,
                 CLIENT_TIMEOUT, "the TLS source to connect")
        assert ffmpeg.poll() is None, ffmpeg.communicate()[1]
        curl = subprocess.Popen(["curl", "-sS", "--cacert", str(ca.certificate),
                                 f"https://127.0.0.1:{port}/tls.mp3"], stdout=subprocess.PIPE)
        assert curl.stdout is not None
        heard = curl.stdout.read(32 * 1024)  # a few seconds of 128 kbit/s: then hang up
        curl.kill()
        curl.wait()
        assert len(heard) == 32 * 1024 and b"\xff\xfb" in heard[:4096]  # MPEG-1 layer III frames
        probe = subprocess.run(
            ["ffprobe", "-v", "error", "-tls_verify", "1", "-ca_file", str(ca.certificate),
             "-show_entries", "stream=codec_name,sample_rate", "-of", "csv=p=0",
             f"https://127.0.0.1:{port}/tls.mp3"],
            capture_output=True, text=True, timeout=CLIENT_TIMEOUT)
        assert probe.returncode == 0, probe.stderr
        assert probe.stdout.strip().startswith("mp3,"), probe.stdout
    finally:
        ffmpeg.send_signal(signal.SIGINT)
        ffmpeg.communicate(timeout=10)


def test_tls_listeners_on_every_worker_get_the_exact_stream(server, ca):
    feed = PatternFeed(server, "/pattern")
    port = tls_port(server)
    listeners = [TlsListener(port, "/pattern", ca).start() for _ in range(4)]
    try:
        for listener in listeners:
            wait_for(lambda: len(listener.body) >= PROGRESS, CLIENT_TIMEOUT, "bytes over TLS")
            assert listener.head.startswith(b"HTTP/1.0 200 OK\r\n")
            locate_in_pattern(bytes(listener.body))  # no gap, duplicate or torn byte
        workers = {worker_of(server, listener.sock.getsockname()[1]) for listener in listeners}
        assert None not in workers
    finally:
        for listener in listeners:
            listener.close()
        feed.close()


def test_admin_over_tls_lists_the_tls_listener_by_its_address(server, ca):
    feed = PatternFeed(server, "/admin-seen")
    listener = TlsListener(tls_port(server), "/admin-seen", ca).start()
    try:
        wait_for(lambda: len(listener.body) > 0, CLIENT_TIMEOUT, "the TLS listener's bytes")
        answer = subprocess.run(
            ["curl", "-sS", "--cacert", str(ca.certificate), "-u", f"admin:{ADMIN_PASSWORD}",
             f"https://127.0.0.1:{tls_port(server)}/admin/listclients?mount=/admin-seen"],
            capture_output=True, text=True, timeout=CLIENT_TIMEOUT)
        assert answer.returncode == 0, answer.stderr
        assert "<IP>127.0.0.1</IP>" in answer.stdout and "tls-test" in answer.stdout
    finally:
        listener.close()
        feed.close()


def test_a_plain_http_request_on_the_tls_port_is_closed_with_one_line(server):
    before = server.output().count("TLS handshake with client failed")
    with socket.create_connection(("127.0.0.1", tls_port(server)), timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(b"GET /pattern HTTP/1.0\r\n\r\n")
        try:
            answer = sock.recv(4096)
        except ConnectionResetError:  # closed with our request unread
            answer = b""
        assert not answer.startswith(b"HTTP")  # no answer in plain text, just closed
    wait_for(lambda: server.output().count("TLS handshake with client failed") == before + 1,
             CLIENT_TIMEOUT, "the handshake failure's log line")


# -- the certificate: refused at start, reloaded on SIGHUP ---------------------------------------


def test_a_bad_certificate_is_refused_at_start_with_one_line(tmp_path, server_cert):
    (tmp_path / "broken.pem").write_text("not a certificate\n")
    (tmp_path / "icecast.xml").write_text(tls_config(tmp_path / "broken.pem"))
    run = subprocess.run([sys.executable, "-m", "fanout", "--allow-root", "-c",
                          str(tmp_path / "icecast.xml")], capture_output=True, text=True,
                         timeout=CLIENT_TIMEOUT)
    assert run.returncode == 2
    assert run.stderr.splitlines() == [
        f"fanout: config error: icecast/paths/ssl-certificate: TLS certificate {tmp_path}/broken.pem "
        f"(key {tmp_path}/broken.pem) not loaded: {tmp_path}/broken.pem holds no PEM certificate"]


def test_a_key_of_another_certificate_is_refused_at_start(tmp_path, ca, server_cert):
    other = ca.issue("other")
    (tmp_path / "icecast.xml").write_text(tls_config(server_cert.certificate, other.key))
    run = subprocess.run([sys.executable, "-m", "fanout", "--allow-root", "-c",
                          str(tmp_path / "icecast.xml")], capture_output=True, text=True,
                         timeout=CLIENT_TIMEOUT)
    assert run.returncode == 2
    assert len(run.stderr.splitlines()) == 1
    assert "icecast/paths/ssl-certificate" in run.stderr
    assert "the private key does not belong to the certificate" in run.stderr


def test_sighup_reloads_the_certificate_and_keeps_tls_listeners(tmp_path, ca, server_cert):
    live = tmp_path / "live.pem"
    live.write_bytes(server_cert.combined.read_bytes())
    srv = start_fanout(tls_config(live), tmp_path, workers=2)
    try:
        port = tls_port(srv)
        feed = PatternFeed(srv, "/reload")
        listeners = [TlsListener(port, "/reload", ca).start() for _ in range(3)]
        for listener in listeners:
            wait_for(lambda: len(listener.body) > 0, CLIENT_TIMEOUT, "bytes before the reload")
        assert subject_of_new_handshake(port, ca) == "server-one"

        live.write_bytes(ca.issue("server-two").combined.read_bytes())
        marks = [len(listener.body) for listener in listeners]
        srv.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in srv.output(), CLIENT_TIMEOUT, "the reload")
        # Each worker reloads on its own: several handshakes in a row (spread over the
        # workers by the kernel) must all get the new certificate.
        wait_for(lambda: all(subject_of_new_handshake(port, ca) == "server-two" for _ in range(4)),
                 CLIENT_TIMEOUT, "every worker to shake hands with the new certificate")
        for listener, mark in zip(listeners, marks):
            wait_for(lambda: len(listener.body) >= mark + PROGRESS, CLIENT_TIMEOUT,
                     "the TLS listener's stream to go on through the reload")
            assert not listener.closed.is_set()
            locate_in_pattern(bytes(listener.body))  # one exact stream across the reload

        live.write_text("garbage\n")  # a bad file on reload: the running certificate stays
        srv.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: srv.output().count("configuration reloaded") == 2, CLIENT_TIMEOUT,
                 "the second reload")
        refusals = [line for line in srv.output().splitlines()
                    if "keeping the running TLS settings" in line]
        assert len(refusals) == 1, srv.output()
        assert refusals[0].endswith(f"config error: icecast/paths/ssl-certificate: TLS certificate "
                                    f"{live} (key {live}) not loaded: {live} holds no PEM certificate")
        assert subject_of_new_handshake(port, ca) == "server-two"
        for listener in listeners:
            listener.close()
        feed.close()
    finally:
        assert srv.stop() == 0, srv.output()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_the_tls_port_refuses_tls_1_1(server):
    run = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{tls_port(server)}",
                          "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"], stdin=subprocess.DEVNULL,
                         capture_output=True, timeout=CLIENT_TIMEOUT)
    assert run.returncode != 0
