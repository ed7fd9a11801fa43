"""Listener authentication (<mount><authentication>, PROTOCOL.md §5.1, §5.5) through a real
fanout with two workers: htpasswd files, manageauth, and an auth server that is a real
HTTP server on a real socket (http.server in a thread of this process), which records the
POSTs it gets and answers as each test tells it. Where cheap, answers are compared with
the real Icecast 2.4.4's."""
from __future__ import annotations

import hashlib
import http.server
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qsl

import pytest

from fanout import __version__
from fanout.protocol.identity import default_server_id
from tests.integration.test_relay import PacedSource
from tests.support.admin import get
from tests.support.clients import Listener, basic, pattern_tail, raw_request
from tests.support.icecast import needs_icecast2, start_icecast2
from tests.support.server import (
    RELAY_PASSWORD, SOURCE_PASSWORD, icecast_xml, start_fanout, worker_of,
)
from tests.support.waiting import wait_for

CHALLENGE = b'WWW-Authenticate: Basic realm="Icecast2 Server"\r\n'
LIVE = ("/private", "/dups", "/full", "/open-full", "/paid", "/open")
AUTH_TIMEOUT = 1  # seconds the /slow mount waits for its auth server
MOST_TRIES = 40  # connections tried before concluding they all land on one worker


def md5_line(user: str, password: str) -> str:
    return f"{user}:{hashlib.md5(password.encode()).hexdigest()}\n"


# ---- the auth server ----------------------------------------------------------------------

Answer = tuple[int, list[tuple[str, str]]]
ACCEPT: Answer = (200, [("icecast-auth-user", "1")])


@dataclass
class AuthServer:
    """A real HTTP auth server: records every POST, answers with `decide(form)`."""

    decide: Callable[[dict[str, str]], Answer] = lambda form: ACCEPT
    posts: list[tuple[str, dict[str, str], dict[str, str], bytes]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def start(self) -> "AuthServer":
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                form = dict(parse_qsl(raw.decode("latin-1"), keep_blank_values=True))
                owner.posts.append((self.path, dict(self.headers), form, raw))
                if self.path == "/slow":
                    owner.release.wait(30)  # answers long after the server gave up
                status, headers = owner.decide(form)
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.httpd.shutdown()

    def forms(self, path: str, **match: str) -> list[dict[str, str]]:
        """The forms POSTed to `path` whose fields include `match`."""
        return [form for got, _, form, _ in self.posts
                if got == path and all(form.get(k) == v for k, v in match.items())]


# ---- the server under test ----------------------------------------------------------------


def mounts_xml(users: Path, auth: AuthServer, refused_port: int) -> str:
    def htpasswd(name: str, extra: str = "", options: str = "") -> str:
        return (f"<mount><mount-name>{name}</mount-name>{extra}<authentication type='htpasswd'>"
                f"<option name='filename' value='{users}'/>{options}</authentication></mount>")

    def url(name: str, add: str, options: str = "") -> str:
        return (f"<mount><mount-name>{name}</mount-name><authentication type='url'>"
                f"<option name='listener_add' value='{add}'/>{options}</authentication></mount>")

    paid = (f"<option name='listener_remove' value='{auth.url}/remove'/>"
            "<option name='username' value='u'/><option name='password' value='p'/>"
            "<option name='headers' value='x-token'/><option name='header_prefix' value='h.'/>")
    return "".join([
        htpasswd("/private"), htpasswd("/offline"),
        htpasswd("/dups", options="<option name='allow_duplicate_users' value='1'/>"),
        htpasswd("/full", extra="<max-listeners>0</max-listeners>"),
        "<mount><mount-name>/open-full</mount-name><max-listeners>0</max-listeners></mount>",
        url("/paid", f"{auth.url}/add", paid),
        url("/slow", f"{auth.url}/slow", f"<option name='timeout' value='{AUTH_TIMEOUT}'/>"),
        url("/down", f"http://127.0.0.1:{refused_port}/add"),
    ])


@dataclass
class Setup:
    server: object
    users: Path
    auth: AuthServer


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("listener-auth")
    users = tmp / "users"
    users.write_text(md5_line("bob", "pw") + md5_line("probe", "probe") + md5_line("ann", "pw"))
    auth = AuthServer().start()
    refused = socket.socket()
    refused.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    server = start_fanout(icecast_xml(mounts=mounts_xml(users, auth, refused.getsockname()[1])),
                          tmp, workers=2)
    sources = [PacedSource(server, mount, pace=0.02) for mount in LIVE]
    for mount in LIVE:
        wait_for(lambda: status_of_as(server, mount, "probe", "probe") in (200, 401, 403), 5,
                 f"{mount} to serve")
    yield Setup(server, users, auth)
    for source in sources:
        source.close()
    auth.stop()
    refused.close()
    assert server.stop() == 0, server.output()


def status_of_as(server, mount: str, user: str, password: str) -> int:
    """The status a listener with these credentials gets (its connection is then closed)."""
    probe = listen(server, mount, user, password)
    probe.close()
    return int(probe.head.split(b" ", 2)[1])


def listen(server, mount: str, user: str | None = None, password: str = "",
           **headers: str) -> Listener:
    """A listener (User-Agent: fanout-test-listener) with these Basic credentials."""
    if user is not None:
        headers["Authorization"] = basic(user, password)
    return Listener(server.host, server.port, mount, headers=headers).start()


def request(server, path: str, authorization: str | None = None) -> bytes:
    lines = [f"GET {path} HTTP/1.0"] + ([f"Authorization: {authorization}"] if authorization else [])
    return raw_request(server.host, server.port, ("\r\n".join(lines) + "\r\n\r\n").encode())


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


# ---- htpasswd -----------------------------------------------------------------------------


def test_missing_credentials_get_401_with_the_icecast_challenge(setup):
    answer = request(setup.server, "/private")
    assert answer.startswith(b"HTTP/1.0 401 Authentication Required\r\n")
    assert CHALLENGE in answer
    assert answer.endswith(b"\r\n\r\nYou need to authenticate\r\n")


@pytest.mark.parametrize("user, password", [("bob", "wrong"), ("nobody", "pw"), ("bob", "")])
def test_wrong_credentials_get_401(setup, user, password):
    answer = request(setup.server, "/private", basic(user, password))
    assert status(answer) == 401 and CHALLENGE in answer


def test_good_credentials_get_the_stream(setup):
    listener = listen(setup.server, "/private", "ann", "pw")
    assert listener.head.startswith(b"HTTP/1.0 200 OK\r\n")
    wait_for(lambda: pattern_tail(listener), 10, "the stream")
    listener.close()


def test_credentials_are_checked_before_the_mount_is_looked_up(setup):
    assert status(request(setup.server, "/offline")) == 401
    assert status(request(setup.server, "/offline", basic("probe", "probe"))) == 404


def test_the_htpasswd_file_edited_while_running_is_read_again(setup):
    # /dups shares the file and lets a user in twice, so every try is a fresh login.
    assert status(request(setup.server, "/dups", basic("dave", "dpw"))) == 401
    original = setup.users.read_text()
    setup.users.write_text(original + md5_line("dave", "dpw"))
    for answer in answers_of_both_workers(setup.server, "/dups", basic("dave", "dpw")):
        assert answer.startswith(b"HTTP/1.0 200 OK")
    setup.users.write_text(original)
    for answer in answers_of_both_workers(setup.server, "/dups", basic("dave", "dpw")):
        assert status(answer) == 401


def answers_of_both_workers(server, path: str, authorization: str) -> list[bytes]:
    """GET `path` until each of the two workers has answered (the kernel picks the
    worker); every answer, or at most its first 4 KiB."""
    answers, workers = [], set()
    for _ in range(MOST_TRIES):
        with socket.create_connection((server.host, server.port), timeout=5) as sock:
            worker = wait_for(lambda: worker_of(server, sock.getsockname()[1]), 5, "its worker")
            sock.sendall(f"GET {path} HTTP/1.0\r\nAuthorization: {authorization}\r\n\r\n".encode())
            answers.append(sock.recv(4096))
        workers.add(worker.pid)
        if len(workers) == 2:
            return answers
    raise AssertionError(f"{MOST_TRIES} connections all landed on one worker")


def test_a_second_login_of_a_listening_user_is_refused_on_every_worker(setup):
    first = listen(setup.server, "/private", "bob", "pw")
    assert first.head.startswith(b"HTTP/1.0 200 OK")
    for answer in answers_of_both_workers(setup.server, "/private", basic("bob", "pw")):
        assert status(answer) == 401 and CHALLENGE in answer
    first.close()
    wait_for(lambda: status_of_as(setup.server, "/private", "bob", "pw") == 200, 5,
             "bob let in again once he left")


def test_duplicate_users_may_listen_where_allowed(setup):
    first, second = (listen(setup.server, "/dups", "bob", "pw") for _ in range(2))
    assert first.head.startswith(b"HTTP/1.0 200 OK") and second.head.startswith(b"HTTP/1.0 200 OK")
    first.close()
    second.close()


def test_a_full_mount_with_authentication_answers_401_as_icecast(setup):
    answer = request(setup.server, "/full", basic("bob", "pw"))
    assert status(answer) == 401 and CHALLENGE in answer
    assert status(request(setup.server, "/open-full")) == 403  # without authentication


def test_relay_credentials_are_a_slave_let_in_without_asking(setup):
    slaves = [listen(setup.server, mount, "relay", RELAY_PASSWORD) for mount in ("/private", "/paid")]
    assert all(slave.head.startswith(b"HTTP/1.0 200 OK") for slave in slaves)
    for slave in slaves:
        slave.close()
    assert setup.auth.forms("/add", user="relay") == []


# ---- manageauth -----------------------------------------------------------------------------


def manageauth(setup, query: str, authorization: str | None = None):
    if authorization is None:
        return get(setup.server, f"/admin/manageauth?{query}")
    return get(setup.server, f"/admin/manageauth?{query}", authorization)


def test_manageauth_adds_lists_and_deletes_users_of_the_file(setup):
    added = manageauth(setup, "mount=/private&action=add&username=carol&password=c%20pw")
    assert added.status == 200 and added.headers["content-type"] == "text/xml; charset=utf-8"
    assert added.xml().findtext("iceresponse/message") == "User added"
    assert md5_line("carol", "c pw") in setup.users.read_text()
    assert status_of_as(setup.server, "/private", "carol", "c pw") == 200
    again = manageauth(setup, "mount=/private&action=add&username=carol&password=x")
    assert again.xml().findtext("iceresponse/message") == "User already exists - not added"
    listed = manageauth(setup, "mount=/private").xml()
    assert {u.findtext("username") for u in listed.iter("User")} >= {"bob", "carol", "probe"}
    assert listed.find("iceresponse") is None
    deleted = manageauth(setup, "mount=/private&action=delete&username=carol")
    assert deleted.xml().findtext("iceresponse/message") == "User deleted"
    assert "carol" not in setup.users.read_text()
    for answer in answers_of_both_workers(setup.server, "/private", basic("carol", "c pw")):
        assert status(answer) == 401


def test_manageauth_needs_admin_or_the_mounts_source_credentials(setup):
    assert manageauth(setup, "mount=/private", basic("bob", "pw")).status == 401
    assert manageauth(setup, "mount=/private", basic("source", SOURCE_PASSWORD)).status == 200


@pytest.mark.parametrize("query", ["mount=/private&action=add&username=x",
                                   "mount=/private&action=delete", "mount=/open"])
def test_manageauth_without_what_it_needs_is_400(setup, query):
    assert manageauth(setup, query).status == 400


def test_manageauth_refuses_a_user_name_that_could_forge_a_line(setup):
    answer = manageauth(setup, "mount=/private&action=add&username=eve%0Amallory&password=x")
    assert answer.xml().findtext("iceresponse/message").startswith("User add failed")
    assert "mallory" not in setup.users.read_text()


def test_manageauth_cannot_add_users_to_url_authentication(setup):
    answer = manageauth(setup, "mount=/paid&action=add&username=x&password=y")
    assert answer.xml().findtext("iceresponse/message").startswith("User add failed")


# ---- url authentication ---------------------------------------------------------------------


def test_listener_add_tells_the_auth_server_who_comes(setup):
    listener = listen(setup.server, "/paid?session=a%20b", "us er", "pa&ss", **{"X-Token": "t 1"})
    assert listener.head.startswith(b"HTTP/1.0 200 OK")
    wait_for(lambda: pattern_tail(listener), 10, "the stream")
    (path, headers, form, raw) = next(p for p in setup.auth.posts if p[2].get("user") == "us er")
    assert path == "/add"
    assert form == {"action": "listener_add", "server": "127.0.0.1", "port": str(setup.server.port),
                    "client": form["client"], "mount": "/paid?session=a%20b", "user": "us er",
                    "pass": "pa&ss", "ip": "127.0.0.1", "agent": "fanout-test-listener",
                    "h.x-token": "t 1"}
    assert raw.startswith(b"action=listener_add&server=127%2e0%2e0%2e1&port=")
    assert headers["Authorization"] == basic("u", "p")
    assert headers["User-Agent"] == default_server_id(__version__)  # <server-id>'s default
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    listener.close()


def test_listener_remove_is_posted_with_the_duration_when_the_listener_leaves(setup):
    listener = listen(setup.server, "/paid", "leaver", "x")
    wait_for(lambda: pattern_tail(listener), 10, "the stream")
    listener.close()
    removed = wait_for(lambda: setup.auth.forms("/remove", user="leaver"), 10, "listener_remove")
    (added,) = setup.auth.forms("/add", user="leaver")
    assert removed[0]["action"] == "listener_remove" and removed[0]["client"] == added["client"]
    assert removed[0]["duration"].isdigit() and removed[0]["mount"] == "/paid"


def test_a_listener_the_auth_server_refuses_gets_401(setup):
    setup.auth.decide = lambda form: (200, [("icecast-auth-message", "no ticket")])
    try:
        answer = request(setup.server, "/paid")
    finally:
        setup.auth.decide = lambda form: ACCEPT
    assert status(answer) == 401 and CHALLENGE in answer


def test_an_auth_server_that_does_not_answer_in_time_means_401(setup):
    started = time.monotonic()
    answer = request(setup.server, "/slow")
    assert status(answer) == 401
    assert AUTH_TIMEOUT <= time.monotonic() - started < AUTH_TIMEOUT + 3


def test_an_unreachable_auth_server_means_401(setup):
    assert status(request(setup.server, "/down")) == 401


def test_the_time_limit_disconnects_only_that_listener(setup):
    def decide(form: dict[str, str]) -> Answer:
        if form.get("user") == "timed":
            return 200, [("icecast-auth-user", "1"), ("icecast-auth-timelimit", "1")]
        return ACCEPT

    setup.auth.decide = decide
    try:
        timed = listen(setup.server, "/paid", "timed", "x")
        untimed = listen(setup.server, "/paid", "untimed", "x")
    finally:
        setup.auth.decide = lambda form: ACCEPT
    open_one = listen(setup.server, "/open")
    assert timed.head.startswith(b"HTTP/1.0 200 OK")
    assert timed.closed.wait(5), "the time-limited listener was not disconnected"
    wait_for(lambda: setup.auth.forms("/remove", user="timed"), 10, "listener_remove")
    for other in (untimed, open_one):
        mark = len(other.body)
        wait_for(lambda: len(other.body) > mark + 16384 and pattern_tail(other), 10,
                 "the other listeners to keep playing")
        assert not other.closed.is_set()
        other.close()


def test_open_mounts_need_no_credentials(setup):
    listener = listen(setup.server, "/open")
    assert listener.head.startswith(b"HTTP/1.0 200 OK")
    listener.close()
    assert setup.auth.forms("/add", mount="/open") == []


# ---- compared with the real Icecast 2.4.4 -----------------------------------------------------


@pytest.fixture
def icecast(tmp_path):
    mount = ("<mount><mount-name>/private</mount-name><authentication type='htpasswd'>"
             "<option name='filename' value='users'/></authentication></mount>")
    server = start_icecast2(mounts=mount)
    yield server
    server.stop()


def without_date(answer: bytes) -> bytes:
    """The answer without its Date, and with fanout's default <server-id> (which names
    fanout after Icecast's words) read as Icecast's own."""
    ours = f"Server: {default_server_id(__version__)}".encode()
    return b"\r\n".join(b"Server: Icecast 2.4.4" if line == ours else line
                         for line in answer.split(b"\r\n") if not line.startswith(b"Date:"))


@needs_icecast2
@pytest.mark.interop
def test_401_is_byte_for_byte_icecast2s(setup, icecast):
    ours = request(setup.server, "/private", basic("bob", "wrong"))
    theirs = request(icecast, "/private", basic("bob", "wrong"))
    assert without_date(ours) == without_date(theirs)


@needs_icecast2
@pytest.mark.interop
def test_manageauth_writes_the_file_and_answer_icecast2_does(icecast, tmp_path):
    users = tmp_path / "users"
    mount = ("<mount><mount-name>/private</mount-name><authentication type='htpasswd'>"
             f"<option name='filename' value='{users}'/></authentication></mount>")
    ours = start_fanout(icecast_xml(mounts=mount), tmp_path, workers=1)
    source = PacedSource(icecast, "/private")  # 2.4.4 manages users of live mounts only
    try:
        wait_for(lambda: get(icecast, "/admin/listmounts").xml().find("source") is not None, 5,
                 "icecast2's mount to be up")
        query = "/admin/manageauth?mount=/private&action=add&username=bob&password=p%C3%A9"
        answers = [get(server, query).body for server in (ours, icecast)]
        assert answers[0] == answers[1]
        assert users.read_bytes() == (Path(icecast.workdir) / "users").read_bytes()
    finally:
        source.close()
        assert ours.stop() == 0, ours.output()
