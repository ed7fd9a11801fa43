"""fanout.config.support: every element is implemented, warned about by path, or without
effect in Icecast 2.4.4 either; and every element of 2.4.4's config is one of those."""

from __future__ import annotations

import re

import pytest

from fanout.config import ConfigError, parse_config
from fanout.config.support import NO_EFFECT_IN_2_4_4, NOT_YET, element_status
from fanout.config.tables import ROOT
from fanout.config.tagtable import element_paths, generic_path

ACCEPTED = frozenset(element_paths(ROOT, "icecast"))

# Every element and attribute Icecast 2.4.4 reads (src/cfgfile.c, tag v2.4.4: _parse_root,
# _parse_limits, _parse_authentication, _parse_directory, _parse_paths, _parse_logging,
# _parse_security, _parse_listen_socket, _parse_http_headers, _parse_relay, _parse_mount),
# as documented in its config-file.html. The inventory of issue 11.
ICECAST_2_4_4 = (
    "hostname", "location", "admin", "server-id", "fileserve", "icelogin", "shoutcast-mount",
    "mime-types", "port", "bind-address", "source-password", "relays-on-demand",
    "master-server", "master-server-port", "master-username", "master-password",
    "master-update-interval",
    "limits/clients", "limits/sources", "limits/queue-size", "limits/burst-on-connect",
    "limits/burst-size", "limits/source-timeout", "limits/header-timeout",
    "limits/client-timeout", "limits/threadpool",
    "authentication/source-password", "authentication/admin-user",
    "authentication/admin-password", "authentication/relay-user", "authentication/relay-password",
    "directory/yp-url", "directory/yp-url-timeout", "directory/touch-interval", "directory/server",
    "listen-socket/port", "listen-socket/bind-address", "listen-socket/ssl",
    "listen-socket/shoutcast-compat", "listen-socket/shoutcast-mount", "listen-socket/so-sndbuf",
    "http-headers/header/@name", "http-headers/header/@value", "http-headers/header/@status",
    "http-headers/header/@type",
    "relay/server", "relay/port", "relay/mount", "relay/local-mount", "relay/username",
    "relay/password", "relay/relay-shoutcast-metadata", "relay/on-demand", "relay/bind",
    "mount/@type", "mount/mount-name", "mount/username", "mount/password", "mount/max-listeners",
    "mount/max-listener-duration", "mount/dump-file", "mount/intro", "mount/fallback-mount",
    "mount/fallback-override", "mount/fallback-when-full", "mount/no-yp", "mount/public",
    "mount/charset", "mount/stream-name", "mount/stream-description", "mount/stream-url",
    "mount/genre", "mount/bitrate", "mount/type", "mount/subtype", "mount/hidden",
    "mount/burst-size", "mount/queue-size", "mount/source-timeout", "mount/mp3-metadata-interval",
    "mount/no-mount", "mount/cluster-password", "mount/on-connect", "mount/on-disconnect",
    "mount/authentication", "mount/http-headers/header/@name", "mount/http-headers/header/@value",
    "paths/basedir", "paths/logdir", "paths/pidfile", "paths/webroot", "paths/adminroot",
    "paths/allow-ip", "paths/deny-ip", "paths/ssl-certificate", "paths/ssl-allowed-ciphers",
    "paths/alias", "paths/alias/@source", "paths/alias/@destination", "paths/alias/@dest",
    "paths/alias/@port", "paths/alias/@bind-address",
    "logging/accesslog", "logging/errorlog", "logging/playlistlog", "logging/logsize",
    "logging/loglevel", "logging/logarchive",
    "security/chroot", "security/changeowner", "security/changeowner/user",
    "security/changeowner/group",
)

# What a document needs around an element for the rest of it to be valid.
_REQUIRED = {
    "icecast/mount": "<mount-name>/m</mount-name>",
    "icecast/relay": "<port>1</port>",
    "icecast/relay/host": "<port>1</port>",
    "icecast/relay/master": "<port>1</port>",
    "icecast/relay/upstream": "<port>1</port>",
}
# The content that asks for the feature, where "1" would not.
_CONTENT = {
    "icecast/security/changeowner": "<user>u</user><group>g</group>",
    "icecast/directory": "<yp-url>http://yp.example/cgi-bin/yp-cgi</yp-url>",
    "icecast/logging/accesslog": "-",
    "icecast/logging/errorlog": "-",
    "icecast/paths/x-forwarded-for": "10.0.0.0/8",
    "icecast/paths/ssl-upstream-verify": "0",
}
# Elements a document must also hold for the element to be valid (a TLS port needs a
# certificate); their own warnings are not the element's.
_COMPANIONS = {
    "icecast/listen-socket/ssl": "<paths><ssl-certificate>/etc/fanout/cert.pem</ssl-certificate></paths>",
}
_ATTRIBUTES = {"icecast/paths/alias": ' source="/" destination="/status.xsl"'}


def document_with(path: str) -> str:
    """The smallest config holding the element at generic ``path`` (a NOT_YET row)."""
    names = path.split("/")[1:]
    inner = _CONTENT.get(path, "1")
    for depth in range(len(names), 0, -1):
        here = "icecast/" + "/".join(names[:depth])
        required = _REQUIRED.get("icecast/" + "/".join(names[:depth - 1]), "") if depth > 1 else ""
        inner = f"<{names[depth - 1]}{_ATTRIBUTES.get(here, '')}>{inner}</{names[depth - 1]}>"
        if depth > 1:
            inner = required + inner
    return f"<icecast>{_COMPANIONS.get(path, '')}{inner}</icecast>"


@pytest.mark.parametrize("element", ICECAST_2_4_4)
def test_every_icecast_2_4_4_element_is_known(element: str) -> None:
    path = f"icecast/{element}"
    assert path in ACCEPTED
    assert element_status(path) in {"implemented", "not implemented yet", "no effect in 2.4.4 either"}


def test_table_rows_name_accepted_elements_only() -> None:
    assert sorted(set(NOT_YET) - ACCEPTED) == []
    assert sorted(set(NO_EFFECT_IN_2_4_4) - ACCEPTED) == []
    assert set(NOT_YET) & set(NO_EFFECT_IN_2_4_4) == set()


@pytest.mark.parametrize("path", sorted(NOT_YET))
def test_each_element_not_implemented_yet_is_warned_with_its_path(path: str) -> None:
    config = parse_config(document_with(path))
    companions = {generic_path(w.split(":")[0]) for w in parse_config(
        f"<icecast>{_COMPANIONS[path]}</icecast>").warnings} if path in _COMPANIONS else set()
    warned = [warning for warning in config.warnings if ": not implemented yet, ignored: " in warning
              and generic_path(warning.split(":")[0]) not in companions]
    assert [generic_path(warning.split(":")[0]) for warning in warned] == [path]
    assert warned[0].endswith(NOT_YET[path].reason)


@pytest.mark.parametrize("path, harmless", [
    ("icecast/security/chroot", "0"), ("icecast/fileserve", "0"),
    ("icecast/logging/accesslog", "access.log"), ("icecast/logging/errorlog", "error.log"),
])
def test_a_value_that_asks_for_nothing_missing_is_not_warned(path: str, harmless: str) -> None:
    document = document_with(path).replace(f">{_CONTENT.get(path, '1')}<", f">{harmless}<")
    assert parse_config(document).warnings == ()


def test_elements_with_no_effect_in_icecast_either_are_silent() -> None:
    document = ("<icecast><limits><threadpool>4</threadpool><client-timeout>9</client-timeout></limits>"
                "<paths><basedir>/b</basedir></paths>"
                '<http-headers><header name="a" value="b" type="static"/></http-headers>'
                '<mount><mount-name>/m</mount-name><http-headers><header name="a" value="b" type="static"/>'
                "</http-headers></mount></icecast>")
    assert parse_config(document).warnings == ()


def test_implemented_elements_are_the_rest() -> None:
    implemented = {path for path in ACCEPTED if element_status(path) == "implemented"}
    assert implemented == ACCEPTED - set(NOT_YET) - set(NO_EFFECT_IN_2_4_4)
    assert {"icecast/hostname", "icecast/mount/fallback-mount", "icecast/paths/logdir"} <= implemented


def test_not_yet_warning_keeps_the_element_value_checked() -> None:
    # Warned is not unchecked: a bad value is still refused with its path.
    with pytest.raises(ConfigError) as caught:
        parse_config("<icecast><security><chroot>maybe</chroot></security></icecast>")
    assert caught.value.path == "icecast/security/chroot"


def test_generic_path_drops_indices() -> None:
    assert generic_path("icecast/relay[2]/host[3]/timeout") == "icecast/relay/host/timeout"
    assert not re.search(r"\[", generic_path("icecast/paths/alias[12]"))
