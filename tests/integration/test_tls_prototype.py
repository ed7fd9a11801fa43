"""TLS prototype (issue 12 §4): how a TLS listener is fed by the compiled sender, with real
clients (curl, openssl s_client and s_server) and a test CA made by openssl.

The question this file answers: can `send_many` (a plain `sendmsg` on the listener's fd,
no Python per listener) feed a TLS listener? With kernel TLS, yes: after OpenSSL's
handshake the fd itself encrypts (`test_plain_writes_on_a_ktls_socket_*`, skipped where
the kernel has no tls module, with the reason). Without it, the bridge: `send_many`
writes plaintext to a socketpair and a greenlet encrypts (`test_send_many_feeds_*`).
`sender_fd` picks between them per connection by asking the socket (getsockopt TLS_TX),
never by assuming. The server side here is fanout.tls in this process (gevent, no
threads); every client is a separate process, run with gevent.subprocess so that waiting
for it lets the bridge's greenlet run.
"""
from __future__ import annotations

import errno
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import gevent
import pytest
from gevent import socket, subprocess

import fanout.tls
from fanout import _core as core
from fanout.config import Paths
from fanout.tls import (
    BRIDGE_BUFFER, Bridge, ServerTls, TlsError, client_context, close_tls, kernel_tls_missing, ktls_tx,
    sender_fd, server_context, wrap_upstream,
)
from tests.support.testca import Issued, TestCA

HEAD = b"HTTP/1.0 200 OK\r\nContent-Type: audio/mpeg\r\n\r\n"
BODY = bytes(range(256)) * 1200  # 300 KiB: many sendmsg passes, many TLS records
CAPACITY = core.ring_capacity_for(4 * len(BODY), 0)  # room for every body a test sends
CLIENT_TIMEOUT = 20  # seconds a client process may take before the test fails
KTLS_MISSING = kernel_tls_missing()


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def server_cert(ca: TestCA) -> Issued:
    return ca.issue("server-one")


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock
    sock.close()


def paths(issued: Issued, separate_key: bool = False) -> Paths:
    if separate_key:
        return Paths(ssl_certificate=str(issued.certificate), ssl_private_key=str(issued.key))
    return Paths(ssl_certificate=str(issued.combined))


class Curl:
    """curl fetching https://127.0.0.1:port/live.mp3 into a file (a pipe nobody reads yet
    would stop it reading the socket, and so from answering our close_notify)."""

    def __init__(self, port: int, ca: TestCA, *extra: str) -> None:
        self.output = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            ["curl", "-sS", "--max-time", str(CLIENT_TIMEOUT), "--cacert", str(ca.certificate),
             *extra, f"https://127.0.0.1:{port}/live.mp3"], stdout=self.output, stderr=subprocess.PIPE)

    def finished(self) -> bytes:
        """What it got, once it exited cleanly (curl exits 56 on a TLS truncation)."""
        _, err = self.process.communicate(timeout=CLIENT_TIMEOUT)
        assert self.process.returncode == 0, err.decode(errors="replace")
        self.output.seek(0)
        return self.output.read()


def accept_request(listening: socket.socket, tls_server: ServerTls) -> socket.socket:
    """The next client's TLS socket, its request head read."""
    conn, _ = listening.accept()
    tls = tls_server.accept(conn, timeout=CLIENT_TIMEOUT)
    head = b""
    while b"\r\n\r\n" not in head:
        data = tls.recv(4096)
        assert data, f"client closed before its request ended: {head!r}"
        head += data
    assert head.startswith(b"GET /live.mp3 HTTP/1.1\r\n")
    return tls


def send_through_sender(fd: int, body: bytes, head: bytes = HEAD) -> tuple[int, int] | None:
    """What a worker's pump does: the ring holds `body`; `send_many` sends it (after
    `head`, the listener's prefix) to `fd` until done, waiting when the fd is full.
    None once all is sent, else the (status, errno) that stopped it."""
    ring = core.Ring.create(CAPACITY, core.FORMAT_GENERIC)
    try:
        for start in range(0, len(body), core.GUARD):
            ring.write(body[start:start + core.GUARD])
        listener = core.Listener(fd, 0, CAPACITY - 2 * core.GUARD, prefix=head)
        while listener.pos < ring.write_seq or listener.prefix_left:
            for _, status, error in core.send_many(ring, [listener], 65536):
                if status != core.WOULD_BLOCK:
                    return status, error
                socket.wait_write(fd, timeout=CLIENT_TIMEOUT)
        return None
    finally:
        ring.close()


def send_all(fd: int, body: bytes, head: bytes = HEAD) -> None:
    assert send_through_sender(fd, body, head) is None


# ---- feeding a TLS listener from the compiled sender ------------------------------------


def test_the_socket_says_whether_the_kernel_encrypts_for_it(listener, ca, server_cert):
    client = Curl(listener.getsockname()[1], ca)
    tls = accept_request(listener, ServerTls(paths(server_cert)))
    # Never assumed: kTLS on the socket exactly when this kernel can do it (the server
    # context asks OpenSSL for it and offers only ciphers the kernel implements by default).
    assert (ktls_tx(tls) is not None) == (KTLS_MISSING is None), (ktls_tx(tls), KTLS_MISSING)
    tls.sendall(HEAD + b"ok")
    close_tls(tls)
    assert client.finished() == b"ok"


@pytest.mark.skipif(KTLS_MISSING is not None, reason=f"no kernel TLS here: {KTLS_MISSING}")
def test_plain_writes_on_a_ktls_socket_reach_the_client_encrypted(listener, ca, server_cert):
    client = Curl(listener.getsockname()[1], ca)
    tls = accept_request(listener, ServerTls(paths(server_cert)))
    assert ktls_tx(tls) is not None
    os.write(tls.fileno(), HEAD)  # a raw write on the fd: the kernel makes it a TLS record
    send_all(tls.fileno(), BODY, head=b"")
    close_tls(tls)  # OpenSSL sends close_notify through the kernel, in sequence
    assert client.finished() == BODY


def test_send_many_feeds_a_tls_listener_through_the_bridge(listener, ca, server_cert):
    client = Curl(listener.getsockname()[1], ca)
    tls = accept_request(listener, ServerTls(paths(server_cert, separate_key=True)))
    bridge = Bridge(tls)
    send_all(bridge.fd, BODY)
    bridge.close()  # the worker dropping the listener: the rest is delivered, then close_notify
    bridge.greenlet.join(timeout=CLIENT_TIMEOUT)
    assert bridge.greenlet.dead
    assert client.finished() == BODY


def test_sender_fd_is_the_socket_with_ktls_else_a_bridge(listener, ca, server_cert):
    client = Curl(listener.getsockname()[1], ca)
    tls = accept_request(listener, ServerTls(paths(server_cert)))
    fd, bridge = sender_fd(tls)
    assert (bridge is None) == (ktls_tx(tls) is not None)
    assert fd == (tls.fileno() if bridge is None else bridge.fd)
    send_all(fd, BODY)
    if bridge is None:
        close_tls(tls)
    else:
        bridge.close()
        bridge.greenlet.join(timeout=CLIENT_TIMEOUT)
    assert client.finished() == BODY


def test_a_client_going_away_fails_the_senders_next_write_on_the_bridge(listener, ca, server_cert):
    client = Curl(listener.getsockname()[1], ca, "--max-filesize", "1000")  # leaves at the head
    tls = accept_request(listener, ServerTls(paths(server_cert)))
    bridge = Bridge(tls)
    send_all(bridge.fd, b"", head=b"HTTP/1.0 200 OK\r\nContent-Length: 99999999\r\n\r\n")
    client.process.communicate(timeout=CLIENT_TIMEOUT)
    assert client.process.returncode == 63  # curl: maximum file size exceeded, and it is gone
    # The pump's writes now fail, it closes its end of the socketpair, and the sender sees
    # EPIPE, as on a plain listener whose client left (the worker then drops it).
    assert send_through_sender(bridge.fd, BODY * 2, head=b"") == (core.ERROR, errno.EPIPE)
    bridge.greenlet.join(timeout=CLIENT_TIMEOUT)
    assert bridge.greenlet.dead


STALLED_CLIENT = """
import socket, ssl, sys, time
context = ssl.create_default_context(cafile=sys.argv[2])
tls = context.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))),
                          server_hostname="127.0.0.1")
tls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
print("connected", flush=True)
time.sleep(60)  # never reads
"""


def stalled_client(port: int, ca: TestCA) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", STALLED_CLIENT, str(port), str(ca.certificate)],
                            stdout=subprocess.PIPE)


def test_the_bridge_queues_at_most_twice_bridge_buffer(listener, ca, server_cert):
    client = stalled_client(listener.getsockname()[1], ca)
    conn, _ = listener.accept()
    bridge = Bridge(ServerTls(paths(server_cert)).accept(conn, timeout=CLIENT_TIMEOUT))
    queued = 0
    with pytest.raises(BlockingIOError):  # the pump has not run: no yield to the hub
        while True:
            queued += os.write(bridge.fd, bytes(4096))
    # The kernel doubles SO_SNDBUF and counts its own overhead per write against it.
    assert BRIDGE_BUFFER < queued <= 2 * BRIDGE_BUFFER
    client.kill()
    bridge.close()
    bridge.greenlet.join(timeout=CLIENT_TIMEOUT)


def test_a_client_that_stops_reading_is_dropped_after_bridge_stall(listener, ca, server_cert, monkeypatch):
    monkeypatch.setattr(fanout.tls, "BRIDGE_STALL", 0.5)
    monkeypatch.setattr(fanout.tls, "CLOSE_TIMEOUT", 0.2)  # its close_notify cannot go out either
    client = stalled_client(listener.getsockname()[1], ca)
    conn, _ = listener.accept()
    bridge = Bridge(ServerTls(paths(server_cert)).accept(conn, timeout=CLIENT_TIMEOUT))
    plain = socket.socket(fileno=os.dup(bridge.fd))  # the sender's end, written blocking
    with pytest.raises(BrokenPipeError):  # the pump gave up on the client and closed its end
        while True:
            plain.sendall(bytes(65536))
    plain.close()
    bridge.close()
    bridge.greenlet.join(timeout=CLIENT_TIMEOUT)
    assert bridge.greenlet.dead
    client.kill()
    client.wait()


# ---- certificates: loading, errors, reload ----------------------------------------------


def test_a_reload_serves_the_new_certificate_and_keeps_established_connections(
        listener, ca, server_cert):
    port = listener.getsockname()[1]
    tls_server = ServerTls(paths(server_cert))
    streaming = Curl(port, ca)
    established = accept_request(listener, tls_server)
    bridge = Bridge(established)
    send_all(bridge.fd, BODY[:1000])
    tls_server.reload(paths(ca.issue("server-two")))  # SIGHUP with a renewed certificate
    probe = subprocess.Popen(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile",
                              str(ca.certificate), "-verify_return_error"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    conn, _ = listener.accept()
    close_tls(tls_server.accept(conn, timeout=CLIENT_TIMEOUT))
    shown = probe.communicate(timeout=CLIENT_TIMEOUT)[0].decode()
    assert "subject=CN = server-two" in shown and "Verify return code: 0 (ok)" in shown
    send_all(bridge.fd, BODY[1000:], head=b"")
    bridge.close()
    bridge.greenlet.join(timeout=CLIENT_TIMEOUT)
    assert streaming.finished() == BODY  # the old connection never noticed


def test_a_bad_certificate_on_reload_keeps_the_running_one(tmp_path, server_cert):
    tls_server = ServerTls(paths(server_cert))
    running = tls_server.context
    (tmp_path / "broken.pem").write_text("not a certificate\n")
    with pytest.raises(TlsError, match="holds no PEM certificate"):
        tls_server.reload(Paths(ssl_certificate=str(tmp_path / "broken.pem")))
    assert tls_server.context is running


def test_certificate_errors_are_one_clear_line(tmp_path, ca, server_cert):
    other = ca.issue("other")
    (tmp_path / "cert-only.pem").write_bytes(server_cert.certificate.read_bytes())
    cases = {
        Paths(ssl_certificate=str(tmp_path / "missing.pem")): "cannot read",
        Paths(ssl_certificate=str(tmp_path / "cert-only.pem")): "holds no PEM private key",
        Paths(ssl_certificate=str(server_cert.certificate), ssl_private_key=str(other.key)):
            "the private key does not belong to the certificate",
        Paths(ssl_certificate=str(server_cert.combined), ssl_allowed_ciphers="NOTHING-LIKE-IT"):
            "selects no cipher",
        Paths(): "no <paths><ssl-certificate>",
    }
    for settings, why in cases.items():
        with pytest.raises(TlsError) as caught:
            server_context(settings)
        assert why in str(caught.value) and "\n" not in str(caught.value)


def test_a_plain_http_client_on_a_tls_port_is_refused_with_one_line(listener, server_cert):
    client = subprocess.Popen(["curl", "-sS", "--max-time", str(CLIENT_TIMEOUT),
                               f"http://127.0.0.1:{listener.getsockname()[1]}/live.mp3"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    conn, _ = listener.accept()
    with pytest.raises(TlsError, match="TLS handshake with client failed: HTTP_REQUEST"):
        ServerTls(paths(server_cert)).accept(conn, timeout=CLIENT_TIMEOUT)
    conn.close()
    client.communicate(timeout=CLIENT_TIMEOUT)


def test_allowed_ciphers_decide_a_tls_1_2_handshake(listener, ca, server_cert):
    # Like Icecast's SSL_CTX_set_cipher_list: TLS 1.2 and below (TLS 1.3 suites are all AEAD).
    settings = Paths(ssl_certificate=str(server_cert.combined),
                     ssl_allowed_ciphers="ECDHE-ECDSA-CHACHA20-POLY1305")
    client = subprocess.Popen(["openssl", "s_client", "-connect", f"127.0.0.1:{listener.getsockname()[1]}",
                               "-tls1_2", "-CAfile", str(ca.certificate)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    conn, _ = listener.accept()
    tls = ServerTls(settings).accept(conn, timeout=CLIENT_TIMEOUT)
    assert tls.cipher()[0] == "ECDHE-ECDSA-CHACHA20-POLY1305"  # type: ignore[index]
    close_tls(tls)
    assert "Cipher is ECDHE-ECDSA-CHACHA20-POLY1305" in client.communicate(timeout=CLIENT_TIMEOUT)[0].decode()


def test_a_tls_1_1_client_is_refused(listener, server_cert):
    # MINIMUM_VERSION: the client is made to offer only TLS 1.1 (its own security level
    # lowered so that it may); the server refuses rather than fall back.
    client = subprocess.Popen(["openssl", "s_client", "-connect", f"127.0.0.1:{listener.getsockname()[1]}",
                               "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    conn, _ = listener.accept()
    with pytest.raises(TlsError, match="UNSUPPORTED_PROTOCOL"):
        ServerTls(paths(server_cert)).accept(conn, timeout=CLIENT_TIMEOUT)
    conn.close()
    client.communicate(timeout=CLIENT_TIMEOUT)
    assert client.returncode != 0


# ---- https upstreams --------------------------------------------------------------------


@pytest.fixture
def upstream(server_cert: Issued) -> Iterator[int]:
    """openssl s_server answering https on a kernel-chosen port (its -www status page)."""
    server = subprocess.Popen(["openssl", "s_server", "-accept", "127.0.0.1:0", "-cert",
                               str(server_cert.certificate), "-key", str(server_cert.key), "-www"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    assert server.stdout is not None
    line = b""
    while not line.startswith(b"ACCEPT"):
        line = server.stdout.readline()
        assert line, "openssl s_server did not start"
    yield int(line.rsplit(b":", 1)[1])
    server.kill()
    server.wait()


def fetch_over(host: str, port: int, context) -> bytes:
    sock = socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT)
    tls = wrap_upstream(sock, host, port, context, timeout=CLIENT_TIMEOUT)
    tls.sendall(b"GET / HTTP/1.0\r\n\r\n")
    data = b""
    while chunk := tls.recv(65536):
        data += chunk
    tls.close()
    return data


def test_an_upstream_with_a_certificate_from_the_trusted_ca_is_read(upstream, ca):
    assert fetch_over("127.0.0.1", upstream, client_context(cafile=str(ca.certificate))).startswith(b"HTTP/1.0 200")


def test_an_upstream_certificate_can_be_pinned(upstream, server_cert):
    context = client_context(cafile=str(server_cert.certificate))  # the leaf itself, no CA
    assert fetch_over("127.0.0.1", upstream, context).startswith(b"HTTP/1.0 200")


def test_an_upstream_certificate_from_another_ca_is_refused_with_one_line(upstream, tmp_path):
    stranger = TestCA(tmp_path / "stranger", "stranger CA")
    with pytest.raises(TlsError) as caught:
        fetch_over("127.0.0.1", upstream, client_context(cafile=str(stranger.certificate)))
    assert str(caught.value) == (f"TLS certificate of 127.0.0.1:{upstream} refused: "
                                 "unable to get local issuer certificate")


def test_an_upstream_certificate_for_another_name_is_refused(upstream, ca):
    with pytest.raises(TlsError, match="refused: Hostname mismatch"):
        fetch_over("example.org", upstream, client_context(cafile=str(ca.certificate)))


def test_the_system_cas_do_not_know_a_test_ca(upstream):
    with pytest.raises(TlsError, match="refused: unable to get local issuer certificate"):
        fetch_over("127.0.0.1", upstream, client_context())


def test_upstream_verification_off_reads_any_certificate(upstream):
    assert fetch_over("example.org", upstream, client_context(verify=False)).startswith(b"HTTP/1.0 200")


def test_an_unreadable_upstream_cafile_is_one_line(tmp_path):
    with pytest.raises(TlsError, match=r"<ssl-upstream-cafile> .* not loaded: No such file"):
        client_context(cafile=str(tmp_path / "nope.pem"))


def test_an_upstream_handshake_is_bounded_in_time():
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts (in the kernel) and never answers the ClientHello
    sock = socket.create_connection(silent.getsockname())
    with pytest.raises(TlsError, match=r"took over 0.2s"):
        wrap_upstream(sock, "127.0.0.1", silent.getsockname()[1], client_context(verify=False),
                      timeout=0.2)
    sock.close()
    silent.close()


def test_gevent_stays_responsive_during_a_handshake(listener, ca, server_cert):
    # The handshake waits on the hub: another greenlet runs meanwhile.
    ticks = []
    ticker = gevent.spawn(lambda: [ticks.append(gevent.sleep(0.01)) for _ in range(5)])
    client = Curl(listener.getsockname()[1], ca)
    tls = accept_request(listener, ServerTls(paths(server_cert)))
    tls.sendall(HEAD)
    close_tls(tls)
    client.finished()
    ticker.join(timeout=CLIENT_TIMEOUT)
    assert len(ticks) == 5
