"""Real client addresses behind balancers and proxies (issue 12 §5).

One server with three ports: plain HTTP, `<proxy-protocol>1`, and `<proxy-protocol>1` with
`<ssl>1` (a TLS-passthrough balancer). `<x-forwarded-for>127.0.0.1` trusts only
127.0.0.1: a test client bound to 127.0.0.2 is "someone else" on the same machine. What is
checked is what the server reports: the address in `/admin/listclients`, in access.log, and
the scheme of a generated playlist URL.
"""
from __future__ import annotations

import ipaddress
import re
import socket
import ssl
import struct

import pytest

from tests.integration.test_listener_auth import AuthServer
from tests.support.admin import get
from tests.support.clients import FillSource, read_head
from tests.support.server import FanoutProcess, icecast_xml, start_fanout
from tests.support.testca import TestCA
from tests.support.waiting import wait_for

PORT_LINE = re.compile(r"listening on (https?)://127\.0\.0\.1:(\d+)/")
UNTRUSTED = "127.0.0.2"  # on loopback, but not in <x-forwarded-for>
TIMEOUT = 10
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v1(source: str, port: int = 40000) -> bytes:
    family = "TCP6" if ":" in source else "TCP4"
    destination = "::1" if family == "TCP6" else "127.0.0.1"
    return f"PROXY {family} {source} {destination} {port} 8000\r\n".encode()


def proxy_v2(source: str, port: int = 40000) -> bytes:
    address = ipaddress.ip_address(source)
    if address.version == 4:
        payload = address.packed + ipaddress.ip_address("127.0.0.1").packed + struct.pack("!HH", port, 8000)
        family = 0x11  # AF_INET, STREAM
    else:
        payload = address.packed + ipaddress.ip_address("::1").packed + struct.pack("!HH", port, 8000)
        family = 0x21  # AF_INET6, STREAM
    return V2_SIGNATURE + bytes([0x21, family]) + struct.pack("!H", len(payload)) + payload


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def logdir(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="module")
def auth():
    server = AuthServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server(ca, logdir, auth, tmp_path_factory):
    certificate = ca.issue("balanced").combined
    sockets = "".join(
        f"<listen-socket><port>0</port><bind-address>127.0.0.1</bind-address>{inner}</listen-socket>"
        for inner in ("<proxy-protocol>1</proxy-protocol>",
                      "<proxy-protocol>1</proxy-protocol><ssl>1</ssl>"))
    paid = ("<mount><mount-name>/paid.mp3</mount-name><authentication type='url'>"
            f"<option name='listener_add' value='{auth.url}/add'/></authentication></mount>")
    srv = start_fanout(icecast_xml(mounts=paid, extra=(
        f"{sockets}<paths><logdir>{logdir}</logdir><ssl-certificate>{certificate}</ssl-certificate>"
        "<x-forwarded-for>127.0.0.1</x-forwarded-for></paths>")), tmp_path_factory.mktemp("srv"))
    sources = [FillSource(srv, mount, content_type="audio/mpeg") for mount in ("/real.mp3", "/paid.mp3")]
    yield srv
    for source in sources:
        source.close()
    assert srv.stop() == 0, srv.output()


def ports(server: FanoutProcess) -> list[tuple[str, int]]:
    return [(scheme, int(port)) for scheme, port in PORT_LINE.findall(server.output())]


def proxy_port(server: FanoutProcess) -> int:
    return ports(server)[1][1]


def proxy_tls_port(server: FanoutProcess) -> int:
    return ports(server)[2][1]


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket()
    sock.settimeout(TIMEOUT)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def listed_ips(server: FanoutProcess, mount: str = "/real.mp3") -> list[str]:
    answer = get(server, f"/admin/listclients?mount={mount}")
    return [element.text or "" for element in answer.xml().iter("IP")]


def access_lines(logdir, request: str) -> list[str]:
    path = logdir / "access.log"
    text = path.read_text() if path.exists() else ""
    return [line for line in text.splitlines() if f'"{request}"' in line]


def listen(sock: socket.socket, prefix: bytes, agent: str) -> bytes:
    """Send `prefix` and a listener's request on `sock`; the response head."""
    sock.sendall(prefix + f"GET /real.mp3 HTTP/1.0\r\nUser-Agent: {agent}\r\n\r\n".encode())
    return read_head(sock)[0]


@pytest.mark.parametrize("version, source", [
    ("v1", "203.0.113.7"), ("v1", "2001:db8::7"), ("v2", "203.0.113.8"), ("v2", "2001:db8::8")])
def test_a_proxy_header_is_the_listed_and_logged_address(server, logdir, version, source):
    header = proxy_v1(source) if version == "v1" else proxy_v2(source)
    agent = f"proxied-{version}-{source}"
    with connect(proxy_port(server)) as sock:
        assert listen(sock, header, agent).startswith(b"HTTP/1.0 200 OK\r\n")
        wait_for(lambda: source in listed_ips(server), TIMEOUT, f"{source} in listclients")
        assert "127.0.0.1" not in listed_ips(server)
    wait_for(lambda: any(agent in line for line in access_lines(logdir, "GET /real.mp3 HTTP/1.0")),
             TIMEOUT, "the listener's access.log line")
    line = next(line for line in access_lines(logdir, "GET /real.mp3 HTTP/1.0") if agent in line)
    assert line.startswith(f"{source} - - [")


def test_a_proxy_header_before_a_tls_handshake_is_read_exactly(server, ca):
    # TLS passthrough: the balancer's header in plain text, then the client's ClientHello.
    raw = connect(proxy_tls_port(server))
    raw.sendall(proxy_v2("198.51.100.20"))
    context = ssl.create_default_context(cafile=str(ca.certificate))
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        assert listen(sock, b"", "proxied-tls").startswith(b"HTTP/1.0 200 OK\r\n")  # type: ignore[arg-type]
        wait_for(lambda: "198.51.100.20" in listed_ips(server), TIMEOUT, "the address in listclients")


def test_a_proxy_header_from_an_untrusted_address_is_refused_with_one_line(server):
    before = server.output().count("PROXY header port reached from an untrusted address")
    with connect(proxy_port(server), UNTRUSTED) as sock:
        sock.sendall(proxy_v1("203.0.113.66") + b"GET /real.mp3 HTTP/1.0\r\n\r\n")
        assert closed_without_answer(sock)
    wait_for(lambda: server.output().count("PROXY header port reached from an untrusted address")
             == before + 1, TIMEOUT, "one log line")
    assert (f"{UNTRUSTED}: PROXY header port reached from an untrusted address (not in "
            "<x-forwarded-for>) (closed)") in server.output()
    assert "203.0.113.66" not in listed_ips(server)


def test_a_connection_without_a_proxy_header_on_a_proxy_port_is_closed_with_one_line(server):
    before = server.output().count("bad PROXY header: the connection does not start with one")
    with connect(proxy_port(server)) as sock:
        sock.sendall(b"GET /real.mp3 HTTP/1.0\r\n\r\n")
        assert closed_without_answer(sock)
    wait_for(lambda: server.output().count("bad PROXY header: the connection does not start with one")
             == before + 1, TIMEOUT, "one log line")


def closed_without_answer(sock: socket.socket) -> bool:
    try:
        return sock.recv(4096) == b""
    except ConnectionResetError:
        return True


def test_x_forwarded_for_from_a_trusted_proxy_is_the_listed_address(server):
    with connect(server.port) as sock:
        head = listen(sock, b"", "forwarded\r\nX-Forwarded-For: 192.0.2.1, 198.51.100.30")
        assert head.startswith(b"HTTP/1.0 200 OK\r\n")
        # The rightmost entry is what the trusted proxy saw; the client wrote the rest.
        wait_for(lambda: "198.51.100.30" in listed_ips(server), TIMEOUT, "the forwarded address")
        assert "192.0.2.1" not in listed_ips(server)


def test_x_forwarded_for_from_an_untrusted_address_is_ignored_with_one_line(server):
    before = server.output().count("X-Forwarded-For from an address not in <x-forwarded-for>")
    with connect(server.port, UNTRUSTED) as sock:
        head = listen(sock, b"", "spoofer\r\nX-Forwarded-For: 198.51.100.99")
        assert head.startswith(b"HTTP/1.0 200 OK\r\n")
        wait_for(lambda: UNTRUSTED in listed_ips(server), TIMEOUT, "the peer's own address")
        assert "198.51.100.99" not in listed_ips(server)
    wait_for(lambda: server.output().count("X-Forwarded-For from an address not in <x-forwarded-for>")
             == before + 1, TIMEOUT, "one log line")


def test_x_forwarded_proto_https_from_a_trusted_proxy_makes_playlists_https(server):
    def m3u(source: str, extra: str) -> bytes:
        with connect(server.port, source) as sock:
            sock.sendall(f"GET /real.mp3.m3u HTTP/1.0\r\nHost: radio.example\r\n{extra}\r\n".encode())
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
            return data.partition(b"\r\n\r\n")[2]
    proto = "X-Forwarded-For: 198.51.100.40\r\nX-Forwarded-Proto: https\r\n"
    assert m3u("127.0.0.1", proto).strip() == b"https://radio.example/real.mp3"
    assert m3u(UNTRUSTED, proto).strip().startswith(b"http://")


def test_a_tls_connection_makes_playlists_https(server, ca):
    raw = connect(proxy_tls_port(server))
    raw.sendall(proxy_v1("198.51.100.50"))
    context = ssl.create_default_context(cafile=str(ca.certificate))
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        port = proxy_tls_port(server)
        sock.sendall(f"GET /real.mp3.m3u HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    assert data.partition(b"\r\n\r\n")[2].strip() == f"https://127.0.0.1:{port}/real.mp3".encode()


def test_listener_authentication_is_told_the_proxied_address(server, auth):
    with connect(proxy_port(server)) as sock:
        sock.sendall(proxy_v2("203.0.113.77") + b"GET /paid.mp3 HTTP/1.0\r\nUser-Agent: paying\r\n\r\n")
        assert read_head(sock)[0].startswith(b"HTTP/1.0 200 OK\r\n")
    [form] = auth.forms("/add", agent="paying")
    assert form["ip"] == "203.0.113.77"
