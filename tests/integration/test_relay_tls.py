"""A fanout slave polling and relaying an https fanout master (issue 12 §4).

The master serves TLS on a second port with a certificate of a test CA; the slave names
it with KH's `<master-ssl-port>` and trusts the test CA with `<ssl-upstream-cafile>`.
Verification is on by default: a slave that does not know the CA refuses the master with
one clear line and relays nothing; `<ssl-upstream-verify>0` (what Icecast-KH always does)
relays from it anyway.
"""
from __future__ import annotations

import re
import subprocess
import sys

import psutil
import pytest

from tests.integration.test_relay import assert_pattern_flows, start_in, wait_status
from tests.support.clients import PacedSource
from tests.support.server import RELAY_PASSWORD, FanoutProcess, icecast_xml
from tests.support.testca import TestCA
from tests.support.waiting import wait_for

TLS_LINE = re.compile(r"listening on https://127\.0\.0\.1:(\d+)/")
INTERVAL = 2
TIMEOUT = 15


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def master(ca, tmp_path_factory):
    certificate = ca.issue("master").combined
    srv = start_in(tmp_path_factory.mktemp("master"), "master", icecast_xml(extra=(
        "<listen-socket><port>0</port><bind-address>127.0.0.1</bind-address><ssl>1</ssl>"
        f"</listen-socket><paths><ssl-certificate>{certificate}</ssl-certificate></paths>")))
    source = PacedSource(srv, "/secure")
    yield srv
    source.close()
    assert srv.stop() == 0, srv.output()


def tls_port(server: FanoutProcess) -> int:
    match = TLS_LINE.search(server.output())
    assert match, server.output()
    return int(match.group(1))


def slave_of(master: FanoutProcess, paths: str) -> str:
    return icecast_xml(extra=f"""
  <master-server>127.0.0.1</master-server>
  <master-server-port>{master.port}</master-server-port>
  <master-ssl-port>{tls_port(master)}</master-ssl-port>
  <master-password>{RELAY_PASSWORD}</master-password>
  <master-update-interval>{INTERVAL}</master-update-interval>
  <paths>{paths}</paths>""")


def connections_to(server: FanoutProcess, port: int) -> int:
    """TCP connections from the server's processes to 127.0.0.1:`port`."""
    count = 0
    for process in [psutil.Process(server.proc.pid), *server.workers()]:
        try:
            count += sum(1 for c in process.net_connections(kind="tcp")
                         if c.raddr and c.raddr.port == port)
        except psutil.NoSuchProcess:
            pass
    return count


def test_a_slave_polls_and_relays_an_https_master_it_trusts(master, ca, tmp_path):
    slave = start_in(tmp_path, "slave", slave_of(
        master, f"<ssl-upstream-cafile>{ca.certificate}</ssl-upstream-cafile>"))
    try:
        wait_status(slave, "/secure", 200, TIMEOUT)  # its pull has connected
        assert_pattern_flows(slave, "/secure", timeout=TIMEOUT)  # byte-exact through TLS
        assert connections_to(slave, tls_port(master)) >= 1  # the pull is on the TLS port
        assert connections_to(slave, master.port) == 0
        assert "stream list poll failed" not in slave.output()
    finally:
        assert slave.stop() == 0, slave.output()


def test_a_slave_refuses_a_master_whose_certificate_it_cannot_verify(master, tmp_path):
    slave = start_in(tmp_path, "doubting", slave_of(master, ""))  # the system CAs only
    try:
        line = (f"master 127.0.0.1:{tls_port(master)}: stream list poll failed: TLS certificate "
                f"of 127.0.0.1:{tls_port(master)} refused: unable to get local issuer certificate")
        wait_for(lambda: line in slave.output(), TIMEOUT, "the refusal's log line")
        assert connections_to(slave, tls_port(master)) == 0  # nothing relayed
    finally:
        assert slave.stop() == 0, slave.output()


def test_verification_switched_off_relays_any_certificate(master, tmp_path):
    slave = start_in(tmp_path, "trusting", slave_of(
        master, "<ssl-upstream-verify>0</ssl-upstream-verify>"))
    try:
        wait_status(slave, "/secure", 200, TIMEOUT)  # its pull has connected
        assert_pattern_flows(slave, "/secure", timeout=TIMEOUT)
    finally:
        assert slave.stop() == 0, slave.output()


def test_a_configured_relay_pulls_from_an_https_host(master, ca, tmp_path):
    relay = (f"<relay><host><server>127.0.0.1</server><port>{tls_port(master)}</port>"
             "<mount>/secure</mount><ssl>1</ssl></host><local-mount>/mirror</local-mount></relay>"
             f"<paths><ssl-upstream-cafile>{ca.certificate}</ssl-upstream-cafile></paths>")
    slave = start_in(tmp_path, "relay", icecast_xml(extra=relay))
    try:
        wait_status(slave, "/mirror", 200, TIMEOUT)  # its pull has connected
        assert_pattern_flows(slave, "/mirror", timeout=TIMEOUT)
        assert connections_to(slave, tls_port(master)) >= 1
    finally:
        assert slave.stop() == 0, slave.output()


def test_an_unreadable_upstream_ca_file_is_refused_at_start_with_one_line(tmp_path):
    missing = tmp_path / "no-such-ca.pem"
    (tmp_path / "icecast.xml").write_text(icecast_xml(
        extra=f"<paths><ssl-upstream-cafile>{missing}</ssl-upstream-cafile></paths>"))
    run = subprocess.run([sys.executable, "-m", "fanout", "--allow-root", "-c",
                          str(tmp_path / "icecast.xml")], capture_output=True, text=True, timeout=20)
    assert run.returncode == 2
    assert run.stderr.splitlines() == [
        f"fanout: config error: icecast/paths/ssl-upstream-cafile: <ssl-upstream-cafile> {missing} "
        "not loaded: No such file or directory"]
