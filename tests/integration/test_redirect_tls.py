"""A slave's TLS port in the KH redirect registration (issue 12 §4), between fanout
servers on loopback.

A director master (`<redirect-mode>always`) with a plain and a TLS port, and two fanout
slaves registering with it: one with a plain and a TLS port, one with a plain port only.
A listener that reached the master over https (its TLS port, or a trusted proxy's
`X-Forwarded-Proto: https`) is sent to `https://<slave>:<slave's TLS port>/...`, and only
to the slave that has one; a plain listener goes to either slave's plain port, as before.
Once no slave with a TLS port is left, the director serves its https listeners itself
rather than downgrade them to http, and refuses those of a full mount.
"""
from __future__ import annotations

import socket
import ssl
from urllib.parse import urlsplit

import pytest

from tests.integration.test_redirect import (FULL_MOUNT, LISTENER_ADDRESS, answer_head,
                                             head_line, kill_hard, redirecting_slave_xml)
from tests.integration.test_relay import start_in, wait_status
from tests.integration.test_tls import TlsListener, tls_port
from tests.support.clients import PacedSource, basic, locate_in_pattern, read_head
from tests.support.server import RELAY_PASSWORD, FanoutProcess, icecast_xml
from tests.support.testca import TestCA
from tests.support.waiting import wait_for

TIMEOUT = 15  # seconds for a slave to start relaying and register
# Listeners asked for at once: were the slave without a TLS port ever chosen for https,
# 30 two-way random choices would all miss it with odds under 2^-30.
ASKED = 30
PROXY = LISTENER_ADDRESS  # the master trusts this address's X-Forwarded-* headers


def tls_socket(ca: TestCA) -> str:
    certificate = ca.issue("server").combined
    return ("<listen-socket><port>0</port><bind-address>127.0.0.1</bind-address><ssl>1</ssl>"
            f"</listen-socket><paths><ssl-certificate>{certificate}</ssl-certificate>"
            f"<x-forwarded-for>{PROXY}</x-forwarded-for></paths>")


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def fleet(ca, tmp_path_factory):
    """(master, slave with a TLS port, slave without), both slaves registered and relaying."""
    started: list[FanoutProcess] = []
    sources: list[PacedSource] = []
    try:
        master = start_in(tmp_path_factory.mktemp("master"), "master", icecast_xml(
            mounts=FULL_MOUNT, extra="<max-redirect-slaves>4</max-redirect-slaves><redirect-mode>always</redirect-mode>"
                  + tls_socket(ca)))
        started.append(master)
        sources += [PacedSource(master, "/live"), PacedSource(master, "/full")]
        secure = start_in(tmp_path_factory.mktemp("secure"), "secure",
                          redirecting_slave_xml(master, extra=tls_socket(ca)))
        started.append(secure)
        plain = start_in(tmp_path_factory.mktemp("plain"), "plain", redirecting_slave_xml(master))
        started.append(plain)
        for slave, shown in ((secure, f", https on port {tls_port(secure)}"), (plain, "")):
            for mount in ("/live", "/full"):
                wait_status(slave, mount, 200, TIMEOUT)
            line = f"redirect slave 127.0.0.1:{slave.port} registered (capacity 500, "
            wait_for(lambda: any(said.startswith(line) and said.endswith(f"listeners){shown}")
                                 for said in log_messages(master)), TIMEOUT, "the registration")
        yield master, secure, plain
    finally:
        for source in sources:
            source.close()
        for server in reversed(started):
            server.stop()
            print(f"--- {server.url} output ---\n{server.output()}")


def log_messages(server: FanoutProcess) -> list[str]:
    """The server's log lines, each from where its message starts ("redirect slave...")."""
    return [line[line.find("redirect slave"):] for line in server.output().splitlines()
            if "redirect slave" in line]


def https_head(master: FanoutProcess, ca: TestCA, target: str) -> bytes:
    """The head of the master's answer to a GET over its TLS port (from LISTENER_ADDRESS)."""
    context = ssl.create_default_context(cafile=str(ca.certificate))
    raw = socket.create_connection(("127.0.0.1", tls_port(master)), 5, (LISTENER_ADDRESS, 0))
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        return read_head(sock)[0]  # type: ignore[arg-type]


def https_locations(master: FanoutProcess, ca: TestCA, target: str = "/live") -> set[str]:
    return {head_line(https_head(master, ca, target), "location") or "none" for _ in range(ASKED)}


def plain_location(slave: FanoutProcess, target: str = "/live") -> str:
    return f"http://127.0.0.1:{slave.port}{target}?fanout-redirected=1"


def secure_location(slave: FanoutProcess, target: str = "/live") -> str:
    return f"https://127.0.0.1:{tls_port(slave)}{target}?fanout-redirected=1"


def test_an_https_listener_is_sent_to_the_slaves_tls_port_and_gets_the_stream(fleet, ca):
    master, secure, _ = fleet
    answer = https_head(master, ca, "/live?token=abc")
    assert answer.startswith(b"HTTP/1.1 302 Found\r\n"), answer[:80]
    location = head_line(answer, "location")
    assert location == f"https://127.0.0.1:{tls_port(secure)}/live?token=abc&fanout-redirected=1"
    parts = urlsplit(location)
    listener = TlsListener(parts.port or 0, f"{parts.path}?{parts.query}", ca).start()
    try:
        assert listener.head.startswith(b"HTTP/1.0 200 OK"), listener.head
        wait_for(lambda: len(listener.body) > 32 * 1024, TIMEOUT, "32 KiB over the slave's TLS")
        locate_in_pattern(bytes(listener.body))  # byte-exact, through two relays of TLS
    finally:
        listener.close()


def test_a_slave_without_a_tls_port_is_never_chosen_for_an_https_listener(fleet, ca):
    master, secure, _ = fleet
    assert https_locations(master, ca) == {secure_location(secure)}


def test_a_plain_listener_still_goes_to_either_slaves_plain_port(fleet):
    master, secure, plain = fleet
    both = {plain_location(secure), plain_location(plain)}

    def seen() -> bool:
        return {head_line(answer_head(master, "/live"), "location") for _ in range(ASKED)} == both
    wait_for(seen, TIMEOUT, "plain listeners sent to both slaves' plain ports")


def test_credentials_and_query_are_kept_in_the_https_location(fleet, ca):
    master, secure, _ = fleet
    context = ssl.create_default_context(cafile=str(ca.certificate))
    raw = socket.create_connection(("127.0.0.1", tls_port(master)), 5, (LISTENER_ADDRESS, 0))
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        sock.sendall(f"GET /live?a=1&b=%20 HTTP/1.1\r\nHost: x\r\n"
                     f"Authorization: {basic('fan', 'p:w')}\r\n\r\n".encode())
        answer = read_head(sock)[0]  # type: ignore[arg-type]
    assert head_line(answer, "location") == \
        f"https://fan:p%3Aw@127.0.0.1:{tls_port(secure)}/live?a=1&b=%20&fanout-redirected=1"


def test_a_trusted_proxys_https_listener_goes_to_the_tls_port(fleet):
    master, secure, _ = fleet
    forwarded = "X-Forwarded-For: 127.0.0.3\r\nX-Forwarded-Proto: https\r\n"
    assert head_line(answer_head(master, "/live", forwarded), "location") == \
        secure_location(secure)
    plain = "X-Forwarded-For: 127.0.0.3\r\nX-Forwarded-Proto: http\r\n"
    assert head_line(answer_head(master, "/live", plain), "location").startswith("http://")


def test_a_bad_tls_port_in_a_registration_is_ignored_with_one_log_line(fleet):
    master, _, _ = fleet
    relay = f"Authorization: {basic('relay', RELAY_PASSWORD)}\r\n"
    # A KH-style registration (no load: not probed), repeated as a slave's polls would be.
    # It names the listeners' own address, so no later test's listener is sent there.
    for _ in range(3):
        poll = (f"/admin/streams?rserver={LISTENER_ADDRESS}&rport=9&interval=60"
                "&fanout-tls-port=443%0D%0AX")
        request = f"GET {poll} HTTP/1.0\r\n{relay}\r\n".encode()
        with socket.create_connection((master.host, master.port), 5) as sock:
            sock.sendall(request)
            assert read_head(sock)[0].startswith(b"HTTP/1.0 200 OK")
    line = (f"redirect slave {LISTENER_ADDRESS}:9: its fanout-tls-port '443\\r\\nX' is not a port; "
            "ignored (no https listener is sent there)")
    wait_for(lambda: line in log_messages(master), TIMEOUT, "the bad port's log line")
    assert log_messages(master).count(line) == 1
    assert f"redirect slave {LISTENER_ADDRESS}:9 registered" in log_messages(master)


def test_with_no_slave_with_a_tls_port_left_the_director_serves_https_itself(fleet, ca):
    """Last in the file: it kills the TLS slave."""
    master, secure, plain = fleet
    kill_hard(secure)
    wait_for(lambda: https_head(master, ca, "/live").startswith(b"HTTP/1.0 200 OK"), TIMEOUT,
             "the director to serve an https listener itself once the TLS slave is gone")
    # The dead slave's pulls came from 127.0.0.1, as the plain slave's polls do: the master
    # took that one out too, until its next registration (fanout/redirects.py).
    wait_for(lambda: head_line(answer_head(master, "/live"), "location") == plain_location(plain),
             TIMEOUT, "plain listeners sent to the plain slave again")
    assert https_head(master, ca, "/live").startswith(b"HTTP/1.0 200 OK")  # still not sent there
    # Where a plain listener would be sent on, an https one is refused as with no slave.
    first = TlsListener(tls_port(master), "/full", ca).start()
    try:
        assert first.head.startswith(b"HTTP/1.0 200 OK"), first.head
        assert https_head(master, ca, "/full").startswith(b"HTTP/1.0 403 Forbidden")
        assert head_line(answer_head(master, "/full"), "location") == plain_location(plain, "/full")
    finally:
        first.close()
