"""fanout.config: icecast.xml → frozen dataclasses, with 2.4.4 defaults and strict values."""

from __future__ import annotations

import dataclasses
import pickle
import re
from pathlib import Path

import pytest

from fanout import __version__
from fanout.config import (
    Authentication, Config, ConfigError, HtpasswdAuth, HttpHeader, Limits, ListenSocket, Logging,
    MasterConfig, MountConfig, Paths, RelayConfig, UrlAuth, default_config, parse_config,
)
from fanout.config.model import DEFAULT_CONNECTIONS_PER_IP
from fanout.startup import load_config
from fanout.config.mountglob import mount_matches
from fanout.config.tables import ALL_TABLES

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "config.sample.xml"
DEBIAN_SAMPLE = Path("/etc/icecast2/icecast.xml")


def parse(body: str) -> Config:
    """Parse ``body`` as the content of an <icecast> element."""
    return parse_config(f"<icecast>{body}</icecast>")


def error_for(body: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse(body)
    return caught.value


# ---- defaults ---------------------------------------------------------------------------


def test_empty_icecast_element_gives_the_2_4_4_defaults() -> None:
    assert parse("") == Config(source="<string>")


def test_root_defaults_match_2_4_4() -> None:
    config = Config()
    assert (config.hostname, config.location, config.admin) == ("localhost", "Earth", "icemaster@localhost")
    # The one default that is not 2.4.4's: fanout names itself (protocol/identity.py),
    # after Icecast's own words, which clients looking for "Icecast" still find.
    assert config.server_id == f"Icecast 2.4.4 (fanout {__version__})"
    assert (config.fileserve, config.icelogin, config.shoutcast_mount) == (True, False, "/stream")
    assert (config.relays_on_demand, config.max_redirect_slaves, config.master_redirect) == (False, 0, False)
    assert config.master is None and config.relays == () and config.mounts == ()


def test_default_listen_socket_is_port_8000_on_every_address() -> None:
    assert Config().listen_sockets == (ListenSocket(port=8000, bind_address=None),)
    assert Config().port == 8000


def test_limits_defaults_match_2_4_4() -> None:
    assert Limits() == Limits(clients=256, sources=16, queue_size=512000, burst_on_connect=True,
                              burst_size=65536, source_timeout=10, header_timeout=15, client_timeout=30)


def test_authentication_defaults_have_no_passwords_and_relay_user_relay() -> None:
    assert Authentication() == Authentication(None, None, None, "relay", None)


def test_logging_and_paths_defaults() -> None:
    assert Logging() == Logging(accesslog="access.log", errorlog="error.log", loglevel=3)
    assert Paths() == Paths(None, None, None, None, None)


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().hostname = "x"  # type: ignore[misc]


# ---- sections ---------------------------------------------------------------------------


def test_root_values_parse() -> None:
    config = parse("<hostname>radio.example.org</hostname><location>Mars</location><admin>a@b</admin>"
                   "<server-id>fanout</server-id><fileserve>0</fileserve><icelogin>1</icelogin>"
                   "<shoutcast-mount>/sc</shoutcast-mount>")
    assert (config.hostname, config.location, config.admin, config.server_id) == (
        "radio.example.org", "Mars", "a@b", "fanout")
    assert (config.fileserve, config.icelogin, config.shoutcast_mount) == (False, True, "/sc")


def test_whitespace_around_element_text_is_stripped() -> None:
    assert parse("<hostname>\n   radio.example.org \n</hostname>").hostname == "radio.example.org"


def test_limits_section_parses() -> None:
    config = parse("<limits><clients>10</clients><sources>2</sources><queue-size>1000</queue-size>"
                   "<burst-on-connect>0</burst-on-connect><burst-size>500</burst-size>"
                   "<source-timeout>5</source-timeout><header-timeout>6</header-timeout>"
                   "<client-timeout>7</client-timeout></limits>")
    assert config.limits == Limits(10, 2, 1000, False, 500, 5, 6, 7)


def test_burst_on_connect_off_makes_effective_burst_zero() -> None:
    assert Limits(burst_on_connect=False, burst_size=9999).effective_burst_size == 0
    assert Limits(burst_size=9999).effective_burst_size == 9999


def test_authentication_section_parses() -> None:
    config = parse("<authentication><source-password>s</source-password><admin-user>root</admin-user>"
                   "<admin-password>a</admin-password><relay-user>r</relay-user>"
                   "<relay-password>p</relay-password></authentication>")
    assert config.authentication == Authentication("s", "root", "a", "r", "p")


def test_legacy_top_level_source_password_is_a_fallback() -> None:
    assert parse("<source-password>old</source-password>").authentication.source_password == "old"
    both = parse("<source-password>old</source-password>"
                 "<authentication><source-password>new</source-password></authentication>")
    assert both.authentication.source_password == "new"


def test_listen_sockets_parse_in_file_order() -> None:
    config = parse("<listen-socket><port>8100</port><bind-address>127.0.0.1</bind-address>"
                   "<so-sndbuf>65536</so-sndbuf></listen-socket>"
                   "<listen-socket><port>8200</port><shoutcast-compat>1</shoutcast-compat></listen-socket>")
    assert config.listen_sockets == (
        ListenSocket(8100, "127.0.0.1", so_sndbuf=65536), ListenSocket(8200, shoutcast_compat=True))
    assert config.port == 8100


def test_listen_socket_without_port_uses_8000() -> None:
    assert parse("<listen-socket><bind-address>::1</bind-address></listen-socket>").listen_sockets == (
        ListenSocket(8000, "::1"),)


def test_shoutcast_mount_on_a_socket_also_opens_port_plus_one_as_compat() -> None:
    config = parse("<listen-socket><port>8000</port><shoutcast-mount>/live</shoutcast-mount></listen-socket>")
    assert config.listen_sockets == (
        ListenSocket(8000, shoutcast_mount="/live"),
        ListenSocket(8001, shoutcast_compat=True, shoutcast_mount="/live"),
    )


def test_legacy_port_and_bind_address_make_the_first_socket() -> None:
    config = parse("<listen-socket><port>9000</port></listen-socket>"
                   "<port>8500</port><bind-address>10.0.0.1</bind-address>")
    assert config.listen_sockets == (ListenSocket(8500, "10.0.0.1"), ListenSocket(9000))


def test_ssl_listen_socket_is_read_and_served_without_a_warning() -> None:
    # tests/unit/test_config_fleet.py has the rest of the TLS elements.
    config = parse("<listen-socket><port>8443</port><ssl>1</ssl></listen-socket>"
                   "<paths><ssl-certificate>/etc/fanout/cert.pem</ssl-certificate></paths>")
    assert config.listen_sockets[0].ssl
    assert config.paths.ssl_certificate == "/etc/fanout/cert.pem"
    assert config.warnings == ()


def test_connections_per_ip_is_read_with_a_bounded_default() -> None:
    assert parse("").limits.connections_per_ip == DEFAULT_CONNECTIONS_PER_IP
    assert parse("<limits><connections-per-ip>3</connections-per-ip></limits>").limits.connections_per_ip == 3


def test_global_http_headers_parse_with_optional_status() -> None:
    config = parse('<http-headers><header name="A" value="1"/><header name="B" value="" status="404"/>'
                   "</http-headers>")
    assert config.http_headers == (HttpHeader("A", "1"), HttpHeader("B", "", 404))


def test_paths_and_logging_parse() -> None:
    config = parse("<paths><basedir>/b</basedir><logdir>/l</logdir><pidfile>/p</pidfile>"
                   "<webroot>/w</webroot><adminroot>/a</adminroot></paths>"
                   "<logging><accesslog>x.log</accesslog><errorlog>y.log</errorlog>"
                   "<loglevel>4</loglevel></logging>")
    assert config.paths == Paths(logdir="/l", pidfile="/p", webroot="/w", adminroot="/a", basedir="/b")
    assert config.logging == Logging("x.log", "y.log", 4)


# ---- master, redirect -------------------------------------------------------------------


def test_master_is_configured_by_server_and_port() -> None:
    config = parse("<master-server>m.example.org</master-server><master-server-port>8001</master-server-port>"
                   "<master-username>u</master-username><master-password>p</master-password>"
                   "<master-update-interval>30</master-update-interval><relays-on-demand>1</relays-on-demand>")
    assert config.master == MasterConfig("m.example.org", 8001, "u", "p", 30, on_demand=True, redirect=False)


def test_master_defaults_to_user_relay_and_120_s() -> None:
    config = parse("<master-server>m</master-server><master-server-port>8001</master-server-port>"
                   "<master-password>p</master-password>")
    assert config.master == MasterConfig("m", 8001, username="relay", password="p", update_interval=120)


def test_master_port_zero_switches_master_relaying_off_silently() -> None:
    config = parse("<master-server>m</master-server><master-server-port>0</master-server-port>")
    assert config.master is None and config.warnings == ()


def test_master_server_without_port_warns_and_stays_off() -> None:
    config = parse("<master-server>m</master-server><master-password>p</master-password>")
    assert config.master is None
    assert config.warnings == ("icecast/master-server-port: missing: master relaying stays off",)


def test_master_without_password_warns() -> None:
    config = parse("<master-server>m</master-server><master-server-port>8001</master-server-port>")
    assert config.master is not None and config.master.password is None
    assert config.warnings[0].startswith("icecast/master-password: missing")


def test_kh_master_block_sets_the_master() -> None:
    config = parse("<master><server>m</server><port>8001</port><username>u</username><password>p</password>"
                   "<interval>60</interval><on-demand>1</on-demand><redirect>1</redirect>"
                   "<run-on>5</run-on></master>")
    assert config.master == MasterConfig("m", 8001, "u", "p", 60, on_demand=True, redirect=True)
    assert config.master_redirect is True
    assert config.warnings == ("icecast/master/run-on: not implemented yet, ignored: "
                               "an Icecast-KH element fanout does not implement",)


def test_kh_redirect_elements_parse() -> None:
    config = parse("<max-redirect-slaves>5</max-redirect-slaves><master-redirect>yes</master-redirect>"
                   "<redirect><host>r1</host><port>8100</port></redirect><redirect><host>r2</host></redirect>")
    assert (config.max_redirect_slaves, config.master_redirect) == (5, True)
    assert config.redirects == (("r1", 8100), ("r2", 8000))


# ---- mounts -----------------------------------------------------------------------------


def test_mount_blocks_keep_file_order_and_the_default_block_apart() -> None:
    config = parse("<mount><mount-name>/b</mount-name></mount><mount type='default'><hidden>1</hidden></mount>"
                   "<mount type='normal'><mount-name>/a</mount-name></mount>")
    assert [mount.mount_name for mount in config.mounts] == ["/b", "/a"]
    assert config.default_mount == MountConfig(is_default=True, hidden=True)


def test_every_mount_element_parses() -> None:
    config = parse("<mount><mount-name>/m</mount-name><username>u</username><password>p</password>"
                   "<max-listeners>5</max-listeners><max-listener-duration>60</max-listener-duration>"
                   "<hidden>1</hidden><public>1</public><burst-size>100</burst-size><queue-size>200</queue-size>"
                   "<source-timeout>3</source-timeout><mp3-metadata-interval>8192</mp3-metadata-interval>"
                   "<charset>UTF-8</charset><stream-name>n</stream-name><stream-description>d</stream-description>"
                   "<stream-url>http://u</stream-url><genre>g</genre><bitrate>128</bitrate><type>audio/mpeg</type>"
                   "<subtype>mp3</subtype><fallback-mount>/f</fallback-mount><fallback-override>1</fallback-override>"
                   "<fallback-when-full>1</fallback-when-full><no-mount>1</no-mount><intro>/i.mp3</intro>"
                   '<http-headers><header name="X" value="y"/></http-headers>'
                   "<dump-file>/d-%F.mp3</dump-file><on-connect>/bin/up</on-connect>"
                   "<on-disconnect>/bin/down</on-disconnect><cluster-password>c</cluster-password></mount>")
    assert config.mounts[0] == MountConfig(
        "/m", False, "u", "p", 5, 60, True, 1, 100, 200, 3, 8192, "UTF-8", "n", "d", "http://u", "g", "128",
        "audio/mpeg", "mp3", "/f", True, True, True, "/i.mp3", (HttpHeader("X", "y"),),
        dump_file="/d-%F.mp3", on_connect="/bin/up", on_disconnect="/bin/down", cluster_password="c")
    # Each is implemented (intro, dump-file, on-connect/-disconnect, YP's cluster-password).
    assert config.warnings == ()


def test_legacy_no_yp_means_not_public() -> None:
    assert parse("<mount><mount-name>/m</mount-name><no-yp>1</no-yp></mount>").mounts[0].public == 0


def test_normal_mount_without_mount_name_is_an_error() -> None:
    error = error_for("<mount><hidden>1</hidden></mount>")
    assert (error.path, error.value) == ("icecast/mount[1]/mount-name", None)


def test_second_default_mount_is_warned_and_ignored() -> None:
    config = parse("<mount type='default'><hidden>1</hidden></mount><mount type='default'><hidden>0</hidden></mount>")
    assert config.default_mount is not None and config.default_mount.hidden is True
    assert config.warnings == ('icecast/mount[2]: a second type="default" mount is ignored; the first one applies',)


@pytest.mark.parametrize(("pattern", "name", "matches"), [
    ("/live.mp3", "/live.mp3", True),
    ("/*.mp3", "/live.mp3", True),
    ("/*.mp3", "/dir/live.mp3", False),  # FNM_PATHNAME: * does not cross "/"
    ("/*", "/dir/live.mp3", False),
    ("/dir/*", "/dir/live.mp3", True),
    ("/*/*.ogg", "/a/b.ogg", True),
    ("/live?", "/live1", True),
    ("/live?", "/live/", False),  # nor does ?
    ("/[ab].mp3", "/b.mp3", True),
    ("/[!ab].mp3", "/c.mp3", True),
    ("/[!ab].mp3", "/a.mp3", False),
    ("/a[!x]b", "/a/b", False),  # nor does a bracket expression
    ("/[a-c]x", "/bx", True),
    ("/\\*", "/*", True),
    ("/\\*", "/x", False),
    ("/[", "/[", True),  # an unterminated bracket is literal
])
def test_mount_glob_has_fnm_pathname_semantics(pattern: str, name: str, matches: bool) -> None:
    assert mount_matches(pattern, name) is matches


def test_resolve_picks_the_first_matching_block_in_file_order() -> None:
    config = parse("<mount><mount-name>/*.mp3</mount-name><max-listeners>1</max-listeners></mount>"
                   "<mount><mount-name>/live.mp3</mount-name><max-listeners>2</max-listeners></mount>")
    assert config.resolve_mount("/live.mp3").max_listeners == 1


def test_resolve_glob_does_not_cross_slashes() -> None:
    config = parse("<mount><mount-name>/*.mp3</mount-name><hidden>1</hidden></mount>")
    assert config.resolve_mount("/a.mp3").hidden is True
    assert config.resolve_mount("/sub/a.mp3").hidden is False


def test_default_block_fills_what_the_normal_block_leaves_unset() -> None:
    config = parse("<mount type='default'><max-listeners>7</max-listeners><hidden>1</hidden>"
                   '<http-headers><header name="D" value="1"/></http-headers></mount>'
                   "<mount><mount-name>/m</mount-name><hidden>0</hidden></mount>")
    mount = config.resolve_mount("/m")
    assert (mount.max_listeners, mount.hidden, mount.http_headers) == (7, False, (HttpHeader("D", "1"),))


def test_unmatched_mount_gets_the_default_block() -> None:
    config = parse("<mount type='default'><public>0</public></mount><mount><mount-name>/m</mount-name></mount>")
    assert config.resolve_mount("/other").public == 0


def test_named_default_block_applies_only_to_matching_mounts() -> None:
    config = parse("<mount type='default'><mount-name>/a/*</mount-name><public>0</public></mount>")
    assert config.resolve_mount("/a/x").public == 0
    assert config.resolve_mount("/b").public == -1


def test_mount_without_any_block_gets_pure_defaults() -> None:
    mount = parse("<authentication><source-password>pw</source-password></authentication>").resolve_mount("/x")
    assert (mount.name, mount.username, mount.password) == ("/x", "source", "pw")
    assert (mount.max_listeners, mount.max_listener_duration, mount.hidden, mount.public) == (-1, 0, False, -1)
    assert (mount.burst_size, mount.queue_size, mount.source_timeout) == (65536, 512000, 10)
    assert (mount.metadata_interval, mount.charset, mount.http_headers) == (0, "ISO8859-1", ())
    assert (mount.fallback_mount, mount.fallback_override, mount.fallback_when_full) == (None, False, False)


def test_mount_password_overrides_the_source_password() -> None:
    config = parse("<authentication><source-password>global</source-password></authentication>"
                   "<mount><mount-name>/m</mount-name><username>dj</username><password>own</password></mount>")
    mount = config.resolve_mount("/m")
    assert (mount.username, mount.password) == ("dj", "own")


def test_burst_on_connect_off_gives_mounts_burst_zero() -> None:
    config = parse("<limits><burst-on-connect>0</burst-on-connect><burst-size>9999</burst-size></limits>")
    assert config.resolve_mount("/x").burst_size == 0


def test_mount_burst_size_overrides_the_global_one_even_without_burst_on_connect() -> None:
    config = parse("<limits><burst-on-connect>0</burst-on-connect></limits>"
                   "<mount><mount-name>/m</mount-name><burst-size>1234</burst-size></mount>")
    assert config.resolve_mount("/m").burst_size == 1234


def test_mount_burst_size_minus_one_inherits() -> None:
    config = parse("<limits><burst-size>4321</burst-size></limits>"
                   "<mount><mount-name>/m</mount-name><burst-size>-1</burst-size></mount>")
    assert config.resolve_mount("/m").burst_size == 4321


def test_mount_queue_size_overrides_limits_and_zero_inherits() -> None:
    config = parse("<limits><queue-size>1000</queue-size></limits>"
                   "<mount><mount-name>/a</mount-name><queue-size>2000</queue-size></mount>"
                   "<mount><mount-name>/b</mount-name><queue-size>0</queue-size></mount>")
    assert (config.resolve_mount("/a").queue_size, config.resolve_mount("/b").queue_size) == (2000, 1000)


def test_mount_source_timeout_overrides_limits_and_zero_inherits() -> None:
    config = parse("<limits><source-timeout>20</source-timeout></limits>"
                   "<mount><mount-name>/a</mount-name><source-timeout>5</source-timeout></mount>"
                   "<mount><mount-name>/b</mount-name><source-timeout>0</source-timeout></mount>")
    assert (config.resolve_mount("/a").source_timeout, config.resolve_mount("/b").source_timeout) == (5, 20)


def test_metadata_interval_is_the_mounts_else_zero() -> None:
    config = parse("<mount><mount-name>/a</mount-name><mp3-metadata-interval>8192</mp3-metadata-interval></mount>"
                   "<mount><mount-name>/b</mount-name><mp3-metadata-interval>-1</mp3-metadata-interval></mount>")
    assert (config.resolve_mount("/a").metadata_interval, config.resolve_mount("/b").metadata_interval) == (8192, 0)


# ---- listener authentication ------------------------------------------------------------


def auth_mount(auth: str, name: str = "/private") -> str:
    return f"<mount><mount-name>{name}</mount-name>{auth}</mount>"


HTPASSWD = ('<authentication type="htpasswd"><option name="filename" value="myauth"/>'
            '<option name="allow_duplicate_users" value="1"/></authentication>')


def test_htpasswd_authentication_parses() -> None:
    config = parse(auth_mount(HTPASSWD))
    assert config.resolve_mount("/private").authentication == HtpasswdAuth("myauth", True)
    assert config.resolve_mount("/open").authentication is None
    assert config.warnings == ()


def test_duplicate_users_are_refused_unless_allowed_as_in_2_4_4() -> None:
    auth = '<authentication type="htpasswd"><option name="filename" value="f"/></authentication>'
    assert parse(auth_mount(auth)).resolve_mount("/private").authentication == HtpasswdAuth("f")
    assert HtpasswdAuth("f").allow_duplicate_users is False


def test_url_authentication_parses_with_2_4_4_defaults() -> None:
    config = parse(auth_mount(
        '<authentication type="url">'
        '<option name="listener_add" value="http://127.0.0.1:9000/auth/add"/>'
        '<option name="listener_remove" value="http://127.0.0.1:9000/auth/remove"/>'
        '<option name="username" value="u"/><option name="password" value="p"/>'
        '<option name="headers" value="x-token, Referer"/>'
        '<option name="header_prefix" value="ClientHeader."/>'
        '<option name="timeout" value="3"/></authentication>', "/paid"))
    assert config.resolve_mount("/paid").authentication == UrlAuth(
        listener_add="http://127.0.0.1:9000/auth/add",
        listener_remove="http://127.0.0.1:9000/auth/remove", username="u", password="p",
        headers=("x-token", "Referer"), header_prefix="ClientHeader.", timeout=3)
    assert (UrlAuth().auth_header, UrlAuth().timelimit_header, UrlAuth().timeout) == (
        "icecast-auth-user: 1\r\n", "icecast-auth-timelimit:", 15)


def test_unknown_authentication_type_is_an_error_not_an_open_mount() -> None:
    error = error_for(auth_mount('<authentication type="command"/>'))
    assert (error.path, error.value) == ("icecast/mount[1]/authentication/@type", "command")
    assert "htpasswd" in error.expected and "url" in error.expected


def test_authentication_without_type_is_an_error() -> None:
    error = error_for(auth_mount('<authentication><option name="filename" value="f"/></authentication>'))
    assert (error.path, error.value) == ("icecast/mount[1]/authentication/@type", None)


def test_htpasswd_without_filename_is_an_error() -> None:
    error = error_for(auth_mount('<authentication type="htpasswd"/>'))
    assert error.path == "icecast/mount[1]/authentication/option" and error.value is None


def test_bad_auth_option_value_names_the_option() -> None:
    error = error_for(auth_mount('<authentication type="url"><option name="listener_remove" value="http://a/"/>'
                                 '<option name="listener_add" value="ftp://host/"/></authentication>'))
    assert (error.path, error.value) == ("icecast/mount[1]/authentication/option[2]/@value", "ftp://host/")


def test_auth_option_without_value_is_an_error() -> None:
    error = error_for(auth_mount('<authentication type="url"><option name="listener_add"/></authentication>'))
    assert error.path == "icecast/mount[1]/authentication/option[1]/@value"


def test_unknown_and_unsupported_auth_options_are_warned() -> None:
    config = parse(auth_mount('<authentication type="url"><option name="listner_add" value="x"/>'
                              '<option name="mount_add" value="http://a/"/></authentication>'))
    assert config.warnings == (
        "icecast/mount[1]/authentication/option[1]: unknown url option 'listner_add', ignored",
        "icecast/mount[1]/authentication/option[2]: url option 'mount_add' is not supported, ignored",
    )


def test_default_block_authentication_protects_only_mounts_without_a_normal_block() -> None:
    # 2.4.4 does not merge <authentication> into normal blocks (checked with icecast2).
    config = parse('<mount type="default"><max-listeners>5</max-listeners>' + HTPASSWD + '</mount>'
                   "<mount><mount-name>/own</mount-name></mount>")
    assert config.resolve_mount("/other").authentication == HtpasswdAuth("myauth", True)
    assert config.resolve_mount("/own").authentication is None
    assert config.resolve_mount("/own").max_listeners == 5


# ---- relays -----------------------------------------------------------------------------


def test_flat_relay_parses() -> None:
    config = parse("<relay><server>up</server><port>8001</port><mount>/a</mount><local-mount>/b</local-mount>"
                   "<username>u</username><password>p</password><relay-shoutcast-metadata>0</relay-shoutcast-metadata>"
                   "<on-demand>1</on-demand></relay>")
    assert config.relays == (RelayConfig("up", 8001, "/a", "/b", "u", "p", relay_shoutcast_metadata=False,
                                         on_demand=True),)


def test_flat_relay_defaults_match_2_4_4() -> None:
    relay = parse("<relay><port>8001</port></relay>").relays[0]
    assert (relay.server, relay.mount, relay.local_mount) == ("127.0.0.1", "/", "/")
    assert (relay.username, relay.password, relay.relay_shoutcast_metadata, relay.on_demand) == (
        None, None, True, False)
    assert (relay.backups, relay.retry_delay) == ((), 120)


def test_relay_local_mount_defaults_to_the_upstream_mount() -> None:
    assert parse("<relay><port>1</port><mount>/up.mp3</mount></relay>").relays[0].local_mount == "/up.mp3"
    assert RelayConfig("h", 1, "/x").local_mount == "/x"


def test_relay_without_port_is_an_error() -> None:
    error = error_for("<relay><server>up</server><mount>/a</mount></relay>")
    assert (error.path, error.value) == ("icecast/relay[1]/port", None)


def test_relay_on_demand_defaults_to_relays_on_demand_as_read_so_far() -> None:
    config = parse("<relay><port>1</port><mount>/a</mount></relay>"
                   "<relays-on-demand>1</relays-on-demand>"
                   "<relay><port>1</port><mount>/b</mount></relay>"
                   "<relay><port>1</port><mount>/c</mount><on-demand>0</on-demand></relay>")
    assert [relay.on_demand for relay in config.relays] == [False, True, False]
    assert config.relays_on_demand is True


def test_relay_retry_delay_defaults_to_master_update_interval_wherever_it_is() -> None:
    config = parse("<relay><port>1</port></relay><master-update-interval>45</master-update-interval>")
    assert config.relays[0].retry_delay == 45


def test_kh_relay_hosts_are_tried_by_priority() -> None:
    config = parse("<relay><local-mount>/l</local-mount><retry-delay>30</retry-delay><run-on>10</run-on>"
                   "<enable>0</enable><relay-icy-metadata>0</relay-icy-metadata>"
                   "<host><ip>b</ip><port>2</port><priority>2</priority></host>"
                   "<master><ip>a</ip><port>1</port><mount>/m</mount><priority>1</priority></master>"
                   "<host><server>c</server><port>3</port><timeout>4</timeout></host></relay>")
    relay = config.relays[0]
    assert (relay.server, relay.port, relay.mount, relay.local_mount) == ("a", 1, "/m", "/l")
    assert relay.backups == (("b", 2, "/"), ("c", 3, "/"))
    assert (relay.retry_delay, relay.run_on, relay.enabled, relay.relay_shoutcast_metadata) == (30, 10, False, False)
    assert config.warnings == ("icecast/relay[1]/host[2]/timeout: not implemented yet, ignored: "
                               "an Icecast-KH element fanout does not implement",)


def test_kh_host_without_port_is_an_error() -> None:
    assert error_for("<relay><host><ip>a</ip></host></relay>").path == "icecast/relay[1]/host[1]/port"


def test_2_5_upstreams_take_defaults_from_the_default_upstream() -> None:
    config = parse("<relay><local-mount>/l</local-mount>"
                   "<upstream type='default'><username>u</username><password>p</password></upstream>"
                   "<upstream><server>s1</server><mount>/m1</mount></upstream>"
                   "<upstream type='normal'><server>s2</server><port>81</port><password>q</password></upstream>"
                   "</relay>")
    relay = config.relays[0]
    assert (relay.server, relay.port, relay.mount, relay.username, relay.password) == ("s1", 80, "/m1", "u", "p")
    assert relay.backups == (("s2", 81, "/"),)


# ---- strict values and errors ------------------------------------------------------------


@pytest.mark.parametrize(("body", "path", "value", "expected"), [
    ("<limits><clients>abc</clients></limits>", "icecast/limits/clients", "abc", "an integer >= 0"),
    ("<limits><clients>-1</clients></limits>", "icecast/limits/clients", "-1", "an integer >= 0"),
    ("<limits><queue-size>1_000</queue-size></limits>", "icecast/limits/queue-size", "1_000", "an integer >= 0"),
    ("<limits><burst-on-connect>maybe</burst-on-connect></limits>", "icecast/limits/burst-on-connect", "maybe",
     "a boolean"),
    ("<listen-socket><port>-1</port></listen-socket>", "icecast/listen-socket[1]/port", "-1",
     "an integer from 0 to 65535"),
    ("<listen-socket><port>65536</port></listen-socket>", "icecast/listen-socket[1]/port", "65536",
     "an integer from 0 to 65535"),
    ("<listen-socket><port>0</port><shoutcast-mount>/sc</shoutcast-mount></listen-socket>",
     "icecast/listen-socket[1]/port", "0", "a fixed port below 65535, as port + 1 opens too"),
    ("<logging><loglevel>5</loglevel></logging>", "icecast/logging/loglevel", "5", "an integer from 1 to 4"),
    ("<mount><mount-name>/a</mount-name></mount><mount><mount-name>/b</mount-name>"
     "<max-listeners>-2</max-listeners></mount>", "icecast/mount[2]/max-listeners", "-2", "an integer >= -1"),
    ("<mount><mount-name>live</mount-name></mount>", "icecast/mount[1]/mount-name", "live",
     "a mount name starting with '/'"),
    ("<mount type='special'><mount-name>/a</mount-name></mount>", "icecast/mount[1]/@type", "special",
     "one of 'normal', 'default'"),
    ("<mount><mount-name>/a</mount-name><public>2</public></mount>", "icecast/mount[1]/public", "2",
     "-1 (the source decides) or a boolean"),
    ("<hostname></hostname>", "icecast/hostname", "", "a non-empty string"),
    ("<master-server-port>x</master-server-port>", "icecast/master-server-port", "x",
     "an integer from 0 to 65535"),
    ("<relay><port>1</port><local-mount>x</local-mount></relay>", "icecast/relay[1]/local-mount", "x",
     "a mount name starting with '/'"),
    ('<http-headers><header name="Bad Name" value="x"/></http-headers>',
     "icecast/http-headers/header[1]/@name", "Bad Name", "an HTTP header name"),
    ('<http-headers><header name="X" value="a&#10;b"/></http-headers>',
     "icecast/http-headers/header[1]/@value", "a\nb", "without line breaks"),
    ('<http-headers><header name="X" value="y" status="99"/></http-headers>',
     "icecast/http-headers/header[1]/@status", "99", "an integer from 100 to 599"),
])
def test_bad_value_error_names_path_value_and_expectation(body: str, path: str, value: str, expected: str) -> None:
    error = error_for(body)
    assert (error.path, error.value) == (path, value)
    assert expected in error.expected


def test_config_error_message_is_one_clear_line() -> None:
    error = error_for("<limits><clients>abc</clients></limits>")
    assert str(error) == "icecast/limits/clients: 'abc' is not valid: expected an integer >= 0"


def test_missing_element_error_says_missing() -> None:
    assert str(error_for("<relay><mount>/a</mount></relay>")).startswith("icecast/relay[1]/port: missing: expected")


@pytest.mark.parametrize("text", ["1", "true", "TRUE", "yes", "Yes"])
def test_boolean_true_spellings(text: str) -> None:
    assert parse(f"<icelogin>{text}</icelogin>").icelogin is True


@pytest.mark.parametrize("text", ["0", "false", "False", "no", "NO"])
def test_boolean_false_spellings(text: str) -> None:
    assert parse(f"<fileserve>{text}</fileserve>").fileserve is False


def test_malformed_xml_raises_config_error_naming_the_source() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("<icecast><limits></icecast>", source="bad.xml")
    assert (caught.value.path, caught.value.expected) == ("bad.xml", "well-formed XML")
    assert "mismatched tag" in str(caught.value)


def test_empty_document_raises_config_error() -> None:
    with pytest.raises(ConfigError):
        parse_config("")


def test_root_other_than_icecast_raises_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("<shoutcast><port>8000</port></shoutcast>")
    assert caught.value.value == "<shoutcast>"


def test_empty_root_other_than_icecast_raises_config_error() -> None:
    with pytest.raises(ConfigError):
        parse_config("<shoutcast/>")


def test_unreadable_file_raises_config_error_naming_it(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.xml")
    with pytest.raises(ConfigError) as caught:
        load_config(missing)
    assert caught.value.path == missing


# ---- warnings ---------------------------------------------------------------------------


def test_unknown_element_is_warned_with_its_path() -> None:
    config = parse("<limits><frobnicate>1</frobnicate></limits><mount><mount-name>/a</mount-name><x/></mount>")
    assert config.warnings == (
        "icecast/limits/frobnicate: unknown element, ignored",
        "icecast/mount[1]/x: unknown element, ignored",
    )


def test_unknown_attribute_is_warned_with_its_path() -> None:
    config = parse_config('<icecast v="2"><mount type="normal" x="1"><mount-name>/a</mount-name></mount></icecast>')
    assert config.warnings == (
        "icecast/@v: unknown attribute, ignored",
        "icecast/mount[1]/@x: unknown attribute, ignored",
    )


def test_elements_without_effect_in_icecast_either_are_silent() -> None:
    config = parse("<security><chroot>0</chroot></security><limits><threadpool>4</threadpool>"
                   "<client-timeout>5</client-timeout></limits><paths><basedir>/b</basedir></paths>"
                   "<directory><yp-url>http://y/</yp-url><server><host>h</host></server></directory>"
                   '<http-headers><header name="a" value="b" type="static"/></http-headers>'
                   "<fileserve>0</fileserve><logging><accesslog>a.log</accesslog></logging>")
    assert config.warnings == ()


def test_elements_not_implemented_yet_are_warned_with_their_paths() -> None:
    config = parse("<security><chroot>1</chroot><changeowner><user>u</user><group>g</group></changeowner>"
                   "</security><paths><alias source='/' destination='/s'/><pidfile>/p</pidfile></paths>"
                   "<logging><logsize>1</logsize><playlistlog>p</playlistlog><accesslog>-</accesslog></logging>"
                   "<limits><workers>2</workers></limits><fileserve>1</fileserve>")
    # chroot, changeowner, alias, pidfile, playlistlog, logsize and fileserve are implemented: silent.
    assert [warning.split(": not implemented yet, ignored: ")[0] for warning in config.warnings] == [
        "icecast/logging/accesslog", "icecast/limits/workers"]


def test_repeated_single_element_warns_and_the_last_one_wins() -> None:
    config = parse("<hostname>a</hostname><hostname>b</hostname>")
    assert config.hostname == "b"
    assert config.warnings == ("icecast/hostname[2]: sets a value already given; this later one wins",)


# ---- whole files ------------------------------------------------------------------------


@pytest.mark.skipif(not DEBIAN_SAMPLE.exists(), reason="Debian's icecast2 is not installed")
def test_debian_sample_config_loads() -> None:
    config = load_config(str(DEBIAN_SAMPLE))
    assert config.port == 8000
    assert config.authentication.source_password == "hackme"
    assert config.http_headers == (HttpHeader("Access-Control-Allow-Origin", "*"),)


def test_repo_sample_config_loads_without_warnings() -> None:
    config = load_config(str(SAMPLE))
    assert config.warnings == ()
    assert config.source == str(SAMPLE)
    assert len(config.relays) == 3 and config.default_mount is not None


def test_repo_sample_documents_every_accepted_element() -> None:
    text = SAMPLE.read_text()
    undocumented = [
        f"{section}/{name}"
        for section, rows in ALL_TABLES.items() for name in rows
        if not re.search(rf'{name[1:]}="' if name.startswith("@") else rf"<{re.escape(name)}[ >/]", text)
    ]
    assert undocumented == []


def test_config_and_config_error_survive_pickling() -> None:
    # The supervisor hands the config to its workers pickled (fanout/control.py).
    config = load_config(str(SAMPLE))
    assert pickle.loads(pickle.dumps(config, protocol=pickle.HIGHEST_PROTOCOL)) == config
    error = pickle.loads(pickle.dumps(ConfigError("icecast/x", "v", "an integer")))
    assert (error.path, error.value, error.expected) == ("icecast/x", "v", "an integer")


def test_load_config_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "icecast.xml"
    path.write_bytes(b'<?xml version="1.0" encoding="UTF-8"?>\n<icecast><location>M\xc3\xbcnchen</location></icecast>')
    config = load_config(str(path))
    assert (config.location, config.source) == ("München", str(path))


# ---- built-in config --------------------------------------------------------------------


def test_default_config_values() -> None:
    config = default_config("src", "adm", "rel", port=9000)
    assert config.listen_sockets == (ListenSocket(9000, "0.0.0.0"),)
    assert config.authentication == Authentication("src", "admin", "adm", "relay", "rel")
    assert config.limits == Limits(clients=1000)
    assert dataclasses.replace(config, listen_sockets=Config().listen_sockets, limits=Limits(),
                               authentication=Authentication()) == Config()


def test_default_config_port_defaults_to_8000() -> None:
    assert default_config("s", "a", "r").port == 8000


def test_listen_socket_port_zero_lets_the_kernel_choose():
    config = parse("<listen-socket><port>0</port></listen-socket>")
    assert config.listen_sockets[0].port == 0
