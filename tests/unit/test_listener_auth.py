"""Listener authentication's pure parts: Icecast's htpasswd file (fanout.protocol.htpasswd)
and the auth server exchange and manageauth answer (fanout.protocol.listener_auth).

The expected bytes were captured from the real Icecast 2.4.4 (its manageauth file lines,
its listener_add/listener_remove POSTs to a test auth server, its manageauth XML)."""

from __future__ import annotations

import base64

import pytest

from fanout.protocol.htpasswd import (
    check_new_user, parse_htpasswd, password_hash, password_matches, user_line, without_user,
)
from fanout.protocol.listener_auth import (
    ListenerFacts, head_length, listener_add_form, listener_remove_form, parse_target,
    read_verdict, render_manageauth, render_post, url_escape,
)

DEFAULT_AUTH_HEADER = "icecast-auth-user: 1\r\n"
TIMELIMIT = "icecast-auth-timelimit:"

# ---- htpasswd ---------------------------------------------------------------------------


def test_password_hash_is_the_hex_md5_icecast_writes() -> None:
    # Lines icecast2 2.4.4 wrote for `manageauth add` of bob/pw and carol/"p:w é".
    assert user_line("bob", "pw") == b"bob:8fe4c11451281c094a6578e6ddbf5eed\n"
    assert password_hash("p:w é") == "280a5f25d81549fccbf81f5f8f84de2f"


def test_file_lines_parse_to_users_and_hashes() -> None:
    parsed = parse_htpasswd(b"bob:8fe4c11451281c094a6578e6ddbf5eed\r\n# a comment\n\ncarol:abc")
    assert parsed.users == {"bob": "8fe4c11451281c094a6578e6ddbf5eed", "carol": "abc"}
    assert parsed.bad_lines == ()


def test_a_line_without_colon_is_skipped_and_reported() -> None:
    parsed = parse_htpasswd(b"bob:h\nnonsense\ncarol:i\n")
    assert parsed.users == {"bob": "h", "carol": "i"}
    assert parsed.bad_lines == (2,)


def test_the_user_is_everything_before_the_last_colon() -> None:
    assert parse_htpasswd(b"al:ice:h\n").users == {"al:ice": "h"}


def test_password_matches_only_the_right_password() -> None:
    users = parse_htpasswd(user_line("bob", "pw")).users
    assert password_matches(users, "bob", "pw")
    assert not password_matches(users, "bob", "PW")
    assert not password_matches(users, "eve", "pw")


@pytest.mark.parametrize("user", ["", "al:ice", "eve\nmallory", "x\r"])
def test_user_names_that_could_not_log_in_or_would_forge_lines_are_refused(user: str) -> None:
    assert check_new_user(user) is not None


def test_a_plain_user_name_may_be_added() -> None:
    assert check_new_user("bob") is None


def test_deleting_a_user_keeps_comments_and_other_users() -> None:
    data = b"# users\nbob:h1\ncarol:h2\nbob:h3\n"
    assert without_user(data, "bob") == b"# users\ncarol:h2\n"
    assert without_user(data, "nobody") == data


# ---- the auth server exchange -----------------------------------------------------------

FACTS = ListenerFacts(server="127.0.0.1", port=59243, client=2, mount="/paid?a=b&c=%20d",
                      user="us er", password="pa&ss", ip="127.0.0.1", agent="P")


def test_url_escape_leaves_only_letters_and_digits() -> None:
    assert url_escape("127.0.0.1") == "127%2e0%2e0%2e1"
    assert url_escape("Test Player/1.0 (x&y)") == "Test%20Player%2f1%2e0%20%28x%26y%29"
    assert url_escape("é_-") == "%c3%a9%5f%2d"


def test_listener_add_form_is_byte_for_byte_icecasts() -> None:
    form = listener_add_form(FACTS, [("ClientHeader.x-token", "t 1")])
    assert form == (b"action=listener_add&server=127%2e0%2e0%2e1&port=59243&client=2"
                    b"&mount=%2fpaid%3fa%3db%26c%3d%2520d&user=us%20er&pass=pa%26ss"
                    b"&ip=127%2e0%2e0%2e1&agent=P&ClientHeader.x-token=t%201")


def test_listener_remove_form_carries_the_duration() -> None:
    assert listener_remove_form(FACTS, 2) == (
        b"action=listener_remove&server=127%2e0%2e0%2e1&port=59243&client=2"
        b"&mount=%2fpaid%3fa%3db%26c%3d%2520d&user=us%20er&pass=pa%26ss&duration=2"
        b"&ip=127%2e0%2e0%2e1&agent=P")


def test_a_missing_user_agent_is_a_bare_dash() -> None:
    facts = ListenerFacts("h", 8000, 1, "/m", "", "", "::1", None)
    assert listener_add_form(facts).endswith(b"&user=&pass=&ip=%3a%3a1&agent=-")


def test_target_takes_the_url_apart() -> None:
    target = parse_target("http://u%40x:p@auth.example:9000/auth/add?k=v")
    assert (target.tls, target.host, target.port, target.path) == (False, "auth.example", 9000,
                                                                    "/auth/add?k=v")
    assert target.host_header == "auth.example:9000"
    assert target.credentials == ("u@x", "p")
    assert parse_target("https://auth.example").port == 443
    assert parse_target("https://auth.example").path == "/"


@pytest.mark.parametrize("url", ["ftp://x/", "http:///nohost", "http://x:99999/"])
def test_target_refuses_what_is_not_an_http_url(url: str) -> None:
    with pytest.raises(ValueError):
        parse_target(url)


def test_post_request_head_and_body() -> None:
    target = parse_target("http://127.0.0.1:9000/auth/add")
    request = render_post(target, b"action=x", "Icecast 2.4.4", ("u", "p"))
    head, _, body = request.partition(b"\r\n\r\n")
    assert head.split(b"\r\n") == [
        b"POST /auth/add HTTP/1.1", b"Host: 127.0.0.1:9000", b"User-Agent: Icecast 2.4.4",
        b"Accept: */*", b"Authorization: Basic " + base64.b64encode(b"u:p"),
        b"Content-Type: application/x-www-form-urlencoded", b"Content-Length: 8",
        b"Connection: close"]
    assert body == b"action=x"


def test_head_length_finds_the_blank_line() -> None:
    assert head_length(b"HTTP/1.0 200 OK\r\nA: b\r\n\r\nbody") == len(b"HTTP/1.0 200 OK\r\nA: b\r\n\r\n")
    assert head_length(b"HTTP/1.0 200 OK\r\nA: b\r\n") == -1


def verdict(head: bytes, auth_header: str = DEFAULT_AUTH_HEADER):
    return read_verdict(head, auth_header, TIMELIMIT)


def test_the_default_auth_header_must_be_a_whole_line_in_any_case() -> None:
    assert verdict(b"HTTP/1.1 200 OK\r\nIcecast-Auth-User: 1\r\n\r\n").accepted
    assert not verdict(b"HTTP/1.1 200 OK\r\nicecast-auth-user: 10\r\n\r\n").accepted
    assert not verdict(b"HTTP/1.1 200 OK\r\nicecast-auth-user: 0\r\n\r\n").accepted
    assert not verdict(b"HTTP/1.1 200 OK\r\nicecast-auth-user:1\r\n\r\n").accepted


def test_a_configured_auth_header_is_a_prefix() -> None:
    assert verdict(b"HTTP/1.1 200 OK\r\nicecast-auth-user: 10\r\n\r\n",
                   "icecast-auth-user: 1").accepted


def test_the_status_is_ignored_only_the_header_counts() -> None:
    assert verdict(b"HTTP/1.1 403 Forbidden\r\nicecast-auth-user: 1\r\n\r\n").accepted
    assert not verdict(b"HTTP/1.1 200 OK\r\n\r\n").accepted
    assert verdict(b"HTTP/1.1 200 OK\r\n\r\n", "HTTP/1.1 200").accepted


def test_timelimit_and_message_are_read() -> None:
    answer = verdict(b"HTTP/1.1 200 OK\r\nicecast-auth-user: 1\r\n"
                     b"Icecast-Auth-Timelimit: 900\r\nicecast-auth-message: go away\r\n\r\n")
    assert (answer.accepted, answer.timelimit, answer.message) == (True, 900, "go away")
    assert verdict(b"HTTP/1.1 200 OK\r\nicecast-auth-timelimit: soon\r\n\r\n").timelimit is None


def test_an_empty_answer_lets_nobody_in() -> None:
    assert verdict(b"") == read_verdict(b"", DEFAULT_AUTH_HEADER, TIMELIMIT)
    assert not verdict(b"").accepted


# ---- manageauth -------------------------------------------------------------------------


def test_manageauth_xml_is_2_4_4s() -> None:
    assert render_manageauth("/private", ["carol", "bob"], "User added") == (
        b'<?xml version="1.0"?>\n<icestats><source mount="/private"><User><username>bob'
        b'</username></User><User><username>carol</username></User></source><iceresponse>'
        b'<message>User added</message></iceresponse></icestats>\n')


def test_manageauth_without_users_or_message_closes_the_source_element() -> None:
    assert render_manageauth("/full", [], None) == (
        b'<?xml version="1.0"?>\n<icestats><source mount="/full"/></icestats>\n')
