"""The fleet elements of icecast.xml (issue 12): redirect mode and capacity, TLS files and
ciphers, upstream verification, KH's master-ssl-port, PROXY sockets, trusted proxies."""
from __future__ import annotations

import pytest

from fanout.config import Config, ConfigError, MasterConfig, Paths, parse_config
from fanout.protocol.forwarded import TrustedProxies
from fanout.protocol.redirect import ALWAYS, WHEN_FULL


def parse(body: str) -> Config:
    return parse_config(f"<icecast>{body}</icecast>")


def error_for(body: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse(body)
    return caught.value


MASTER = "<master-server>m</master-server><master-server-port>8000</master-server-port>" \
         "<master-password>p</master-password>"


def test_defaults_are_khs_redirect_and_verified_upstreams_without_tls():
    config = parse("")
    assert (config.redirect_mode, config.master_redirect_capacity) == (WHEN_FULL, 0)
    assert config.paths == Paths()
    assert config.paths.ssl_upstream_verify and config.paths.x_forwarded_for == ()
    assert not config.listen_sockets[0].ssl and not config.listen_sockets[0].proxy_protocol


@pytest.mark.parametrize("text,mode", [("always", ALWAYS), ("When-Full", WHEN_FULL)])
def test_redirect_mode_reads_its_two_values(text, mode):
    assert parse(f"<redirect-mode>{text}</redirect-mode>").redirect_mode == mode


def test_redirect_mode_refuses_anything_else():
    error = error_for("<redirect-mode>sometimes</redirect-mode>")
    assert error.path == "icecast/redirect-mode" and "'when-full', 'always'" in error.expected


def test_master_redirect_capacity_is_a_count():
    assert parse("<master-redirect-capacity>300</master-redirect-capacity>").master_redirect_capacity == 300
    assert error_for("<master-redirect-capacity>-1</master-redirect-capacity>").path == \
        "icecast/master-redirect-capacity"


def test_tls_paths_certificate_with_key_or_separate_key_and_ciphers():
    config = parse("<listen-socket><port>8443</port><ssl>1</ssl></listen-socket>"
                   "<paths><ssl-certificate>/c.pem</ssl-certificate><ssl-private-key>/k.pem"
                   "</ssl-private-key><ssl-allowed-ciphers>ECDHE+AESGCM</ssl-allowed-ciphers></paths>")
    assert config.listen_sockets[0].ssl
    assert (config.paths.ssl_certificate, config.paths.ssl_private_key,
            config.paths.ssl_allowed_ciphers) == ("/c.pem", "/k.pem", "ECDHE+AESGCM")


def test_a_tls_port_without_a_certificate_is_refused():
    error = error_for("<listen-socket><port>8443</port><ssl>1</ssl></listen-socket>")
    assert (error.path, error.value) == ("icecast/paths/ssl-certificate", None)
    assert "<ssl>1" in error.expected


def test_a_certificate_without_a_tls_port_is_fine():
    assert parse("<paths><ssl-certificate>/c.pem</ssl-certificate></paths>").warnings == ()


def test_upstream_verification_can_be_pinned_or_switched_off():
    config = parse("<paths><ssl-upstream-cafile>/ca.pem</ssl-upstream-cafile>"
                   "<ssl-upstream-verify>0</ssl-upstream-verify></paths>")
    assert (config.paths.ssl_upstream_cafile, config.paths.ssl_upstream_verify) == ("/ca.pem", False)


@pytest.mark.parametrize("spelling", ["<master-ssl-port>8443</master-ssl-port>",
                                      "<master><ssl-port>8443</ssl-port></master>"])
def test_khs_master_ssl_port_in_both_spellings(spelling):
    config = parse(MASTER + spelling)
    assert config.master == MasterConfig("m", 8000, password="p", ssl_port=8443)
    assert config.warnings == ()
    assert (config.master.upstream_port, config.master.tls) == (8443, True)


def test_proxy_protocol_socket_is_read_and_served_without_a_warning():
    config = parse("<listen-socket><port>8000</port><proxy-protocol>1</proxy-protocol></listen-socket>")
    assert config.listen_sockets[0].proxy_protocol
    assert config.warnings == ()


def test_trusted_proxies_repeat_and_take_cidrs_addresses_and_kh_patterns():
    config = parse("<paths><x-forwarded-for>10.0.0.0/8</x-forwarded-for><x-forwarded-for>::1"
                   "</x-forwarded-for><x-forwarded-for>192.168.*</x-forwarded-for></paths>")
    assert config.paths.x_forwarded_for == ("10.0.0.0/8", "::1", "192.168.*")
    trusted = TrustedProxies.from_config(config.paths.x_forwarded_for)
    assert trusted.trusts("10.9.8.7") and trusted.trusts("::1") and trusted.trusts("192.168.3.4")
    assert not trusted.trusts("11.0.0.1")


@pytest.mark.parametrize("text", ["everyone", "10.0.0.0/33", "*.example.org", "1.2.3.4 5.6.7.8"])
def test_a_trusted_proxy_that_is_no_address_block_or_pattern_is_refused(text):
    error = error_for(f"<paths><x-forwarded-for>{text}</x-forwarded-for></paths>")
    assert error.path == "icecast/paths/x-forwarded-for[1]" and "CIDR" in error.expected
