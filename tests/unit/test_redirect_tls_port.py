"""A slave's TLS port in its redirect registration (issue 12 §4): `fanout-tls-port` on the
wire, in the master's table, in the choice for an https listener, in the Location. Pure,
but for the master's log line, which goes through the supervisor's `SlaveRedirects`."""
from __future__ import annotations

import logging
import random

import pytest

from fanout.config import Config, ListenSocket
from fanout.messages import Redirects, SlaveRegister
from fanout.protocol.http import HeadParser
from fanout.protocol.redirect import (
    HTTPS, MAX_REGISTRATION_QUERY, MAX_REPORTED_MOUNTS, MAX_SHOWN_TLS_PORT, TLS_PORT_KEY,
    Registration, SlaveLoad, parse_registration, parse_tls_port, redirect_location,
    registration_query,
)
from fanout.redirects import ADDED, REFRESHED, Chooser, RedirectTable, Target, choose
from fanout.supervisor.slaves import SlaveRedirects, registration_ports

LOAD = SlaveLoad(listeners=1, capacity=100, healthy=True, refresh=0.5)


def poll(query: str) -> list[tuple[str, str]]:
    """The query of a poll as the master's request parser decodes it."""
    request = HeadParser().feed(f"GET /admin/streams{query} HTTP/1.0\r\n\r\n".encode())
    assert request is not None
    return list(request.query)


# ---- on the wire ----------------------------------------------------------------------------


def test_the_tls_port_rides_right_after_khs_parameters():
    text = registration_query("relay1", 8001, 30, LOAD, tls_port=8443)
    assert text.startswith("?rserver=relay1&rport=8001&interval=30&fanout-tls-port=8443&"
                           "fanout-listeners=1&")


def test_a_slave_without_a_tls_port_sends_no_tls_parameter():
    assert TLS_PORT_KEY not in registration_query("relay1", 8001, 30, LOAD)
    assert registration_query("relay1", 8001, 30) == "?rserver=relay1&rport=8001&interval=30"


def test_the_tls_port_parses_back_with_the_load():
    registration = parse_registration(poll(registration_query("relay1", 8001, 30, LOAD, 8443)))
    assert registration == Registration("relay1", 8001, 30, LOAD, tls_port=8443)


def test_a_kh_slaves_registration_has_no_tls_port():
    assert parse_registration(poll("?rserver=h&rport=8000&interval=30")) == \
        Registration("h", 8000, 30)


def test_the_tls_port_survives_a_load_report_cut_to_fit():
    many = tuple((f"/mount-with-a-long-name-{i:03}", i) for i in range(MAX_REPORTED_MOUNTS))
    text = registration_query("relay1", 8001, 30, SlaveLoad(1, 2, True, 0.5, many), 8443)
    assert len(text) <= MAX_REGISTRATION_QUERY
    registration = parse_registration(poll(text))
    assert registration is not None and registration.tls_port == 8443
    assert registration.load is not None and len(registration.load.mounts) < len(many)


def test_a_kh_master_reads_the_same_three_parameters_with_the_tls_port_in():
    # KH looks rserver, rport and interval up by name (PROTOCOL.md §2.3): an extra
    # parameter between them and the load changes nothing it reads.
    values = dict(poll(registration_query("relay1", 8001, 30, LOAD, 8443)))
    assert (values["rserver"], values["rport"], values["interval"]) == ("relay1", "8001", "30")


@pytest.mark.parametrize("text", ["", "abc", "0", "65536", "-1", "8443x", "84 43", "²",
                                  "99999999999999999999999", "8443\r\nX-Evil: 1"])
def test_a_tls_port_that_is_not_a_port_is_ignored_and_kept_for_the_log(text):
    assert parse_tls_port(text) == (0, text[:MAX_SHOWN_TLS_PORT])


def test_a_bad_tls_port_leaves_the_rest_of_the_registration_as_it_is():
    query = [("rserver", "h"), ("rport", "8000"), ("interval", "30"),
             ("fanout-listeners", "1"), ("fanout-capacity", "100"), ("fanout-health", "ok"),
             ("fanout-refresh", "0.5"), (TLS_PORT_KEY, "https")]
    assert parse_registration(query) == Registration("h", 8000, 30, LOAD, 0, "https")


def test_a_long_bad_tls_port_is_cut_for_the_log():
    assert parse_tls_port("9" * 10 + "x" * 1000) == (0, ("9" * 10 + "x" * 1000)[:MAX_SHOWN_TLS_PORT])
    assert MAX_SHOWN_TLS_PORT == 16


@pytest.mark.parametrize("text, port", [("1", 1), ("65535", 65535), (" 8443 ", 8443)])
def test_a_tls_port_in_range_is_taken(text, port):
    assert parse_tls_port(text) == (port, "")


def test_the_first_tls_port_given_counts():
    query = poll("?rserver=h&rport=8000&interval=30&fanout-tls-port=8443&fanout-tls-port=x")
    assert parse_registration(query) == Registration("h", 8000, 30, tls_port=8443)


# ---- the Location -------------------------------------------------------------------------------


def test_an_https_location_keeps_host_form_path_query_and_credentials():
    assert redirect_location("::1", 8443, "/a b", "x=1&fanout-redirected=1", ("u", "p:w"),
                             HTTPS) == "https://u:p%3Aw@[::1]:8443/a%20b?x=1&fanout-redirected=1"


def test_a_plain_location_is_as_before():
    assert redirect_location("relay1", 8001, "/live", "") == "http://relay1:8001/live"


def test_a_location_with_another_scheme_is_refused():
    with pytest.raises(ValueError):
        redirect_location("relay1", 8001, "/live", "", scheme="ftp")


# ---- the master's table and choice ---------------------------------------------------------


def test_the_table_keeps_the_tls_port_it_was_last_told():
    table = RedirectTable(4)
    assert table.register("a", 8000, 30, now=0.0, load=LOAD, tls_port=8443) == ADDED
    assert table.targets()[0].tls_port == 8443
    assert table.register("a", 8000, 30, now=0.1, load=LOAD) == REFRESHED  # restarted without
    assert table.targets()[0].tls_port == 0


def test_an_https_listener_goes_only_to_a_slave_with_a_tls_port():
    targets = [Target("plain", 8000, None, LOAD), Target("static", 8001, None),
               Target("secure", 8002, None, LOAD, tls_port=8443)]
    rng = random.Random(1)
    assert {choose(targets, 0.0, rng, tls=True).host for _ in range(50)} == {"secure"}
    assert {choose(targets, 0.0, rng).host for _ in range(200)} == {"plain", "static", "secure"}


def test_with_no_slave_with_a_tls_port_an_https_listener_gets_none():
    targets = [Target("plain", 8000, None, LOAD), Target("static", 8001, None)]
    assert Chooser().pick(targets, 0.0, random.Random(1), tls=True) is None
    table = RedirectTable(4, [("static", 8001)])
    table.register("plain", 8000, 30, now=0.0, load=LOAD)
    assert table.pick(0.0, random.Random(1), tls=True) is None
    assert table.pick(0.0, random.Random(1)) is not None


def test_a_dead_tls_slave_is_not_chosen_for_https_either():
    table = RedirectTable(4)
    table.register("secure", 8000, 30, now=0.0, load=LOAD, tls_port=8443)
    table.mark_dead("secure", 8000, 0.1)
    assert table.pick(0.2, random.Random(1), tls=True) is None


# ---- the slave's ports ------------------------------------------------------------------------


PLAIN, TLS = ListenSocket(port=0), ListenSocket(port=0, ssl=True)
PROXIED_TLS = ListenSocket(port=0, ssl=True, proxy_protocol=True)
PROXIED = ListenSocket(port=0, proxy_protocol=True)


@pytest.mark.parametrize("sockets, ports", [
    ([(PLAIN, 8000), (TLS, 8443)], (8000, 8443)),
    ([(TLS, 8443), (PLAIN, 8000)], (8000, 8443)),  # a 302 to a TLS port as http would fail
    ([(PLAIN, 8000)], (8000, 0)),
    ([(PROXIED, 9000), (PROXIED_TLS, 9443), (PLAIN, 8000)], (8000, 0)),  # PROXY: not for listeners
    ([(TLS, 8443)], (8443, 8443)),  # no plain port: the first, as before
    ([(PLAIN, 8000), (TLS, 8443), (TLS, 9443)], (8000, 8443)),
])
def test_a_slave_registers_its_first_plain_and_first_tls_port(sockets, ports):
    assert registration_ports(sockets) == ports


# ---- the master's log line --------------------------------------------------------------------


class Workers:
    """The supervisor's pool, as far as SlaveRedirects uses it: what it broadcasts."""

    def __init__(self) -> None:
        self.sent: list[object] = []

    def broadcast(self, message: object) -> None:
        self.sent.append(message)


def test_a_bad_tls_port_is_one_log_line_however_often_the_slave_polls(caplog):
    workers = Workers()
    slaves = SlaveRedirects(Config(max_redirect_slaves=2), workers)  # type: ignore[arg-type]
    caplog.set_level(logging.INFO, logger="fanout.supervisor")
    for _ in range(5):  # a KH-style registration: no load, so no /health prober starts
        slaves.on_slave_register(SlaveRegister("h", 8000, 30, None, "10.0.0.2", 0, "x\n1"),
                                 None)  # type: ignore[arg-type]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["redirect slave h:8000: its fanout-tls-port 'x\\n1' is not a port; "
                        "ignored (no https listener is sent there)"]
    last = workers.sent[-1]
    assert isinstance(last, Redirects) and last.targets[0].tls_port == 0


def test_the_registration_log_line_names_the_tls_port(caplog):
    slaves = SlaveRedirects(Config(max_redirect_slaves=2), Workers())  # type: ignore[arg-type]
    caplog.set_level(logging.INFO, logger="fanout.supervisor")
    slaves.on_slave_register(SlaveRegister("h", 8000, 30, None, "10.0.0.2", 8443),
                             None)  # type: ignore[arg-type]
    assert [r.getMessage() for r in caplog.records] == \
        ["redirect slave h:8000 registered, https on port 8443"]
