"""fanout.config, issue 11 elements: <security>, <paths><alias>/<pidfile>/<webroot>,
<directory>, <mime-types>, <logging> playlist and rotation, and the mount's scripts,
dump file and intro: parsed into frozen dataclasses with 2.4.4's defaults, checked strictly."""

from __future__ import annotations

import pytest

from fanout.config import (
    Alias, ChangeOwner, Config, ConfigError, Directory, Logging, Security, parse_config,
)
from fanout.config.hosting import (
    DEFAULT_YP_TIMEOUT, MAX_YP_DIRECTORIES, MIN_YP_TOUCH_INTERVAL, YP_TIMEOUT_RANGE,
)
from fanout.config.model import DEFAULT_MIME_TYPES


def parse(body: str) -> Config:
    return parse_config(f"<icecast>{body}</icecast>")


def error_for(body: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse(body)
    return caught.value


def test_defaults_are_2_4_4s() -> None:
    config = parse("")
    assert config.security == Security(chroot=False, changeowner=None)
    assert (config.paths.pidfile, config.paths.webroot, config.paths.aliases) == (None, None, ())
    assert config.directories == ()
    assert config.mime_types == DEFAULT_MIME_TYPES == "/etc/mime.types"
    assert config.logging == Logging(playlistlog=None, logsize=None, logarchive=False)
    mount = config.resolve_mount("/live")
    assert (mount.intro, mount.dump_file, mount.on_connect, mount.on_disconnect,
            mount.cluster_password) == (None, None, None, None, None)


# ---- <security> ---------------------------------------------------------------------------


def test_security_reads_chroot_and_changeowner() -> None:
    config = parse("<security><chroot>1</chroot>"
                   "<changeowner><user>icecast2</user><group>icecast</group></changeowner></security>")
    assert config.security == Security(True, ChangeOwner("icecast2", "icecast"))


@pytest.mark.parametrize("given, missing", [("<user>u</user>", "group"), ("<group>g</group>", "user")])
def test_changeowner_needs_both_user_and_group(given: str, missing: str) -> None:
    error = error_for(f"<security><changeowner>{given}</changeowner></security>")
    assert (error.path, error.value) == (f"icecast/security/changeowner/{missing}", None)


def test_chroot_is_a_boolean() -> None:
    error = error_for("<security><chroot>sometimes</chroot></security>")
    assert (error.path, error.value) == ("icecast/security/chroot", "sometimes")


# ---- <paths> ------------------------------------------------------------------------------


def test_aliases_keep_file_order_and_both_spellings_of_destination() -> None:
    config = parse('<paths><alias source="/" destination="/status.xsl"/>'
                   '<alias source="/a" dest="/b" port="8001" bind-address="127.0.0.1"/></paths>')
    assert config.paths.aliases == (Alias("/", "/status.xsl"), Alias("/a", "/b", 8001, "127.0.0.1"))


@pytest.mark.parametrize("attributes, path", [
    ('destination="/b"', "icecast/paths/alias[1]/@source"),
    ('source="/a"', "icecast/paths/alias[1]/@destination"),
])
def test_alias_without_source_or_destination_is_refused(attributes: str, path: str) -> None:
    # 2.4.4 drops such an alias silently; a typo there would then be invisible.
    error = error_for(f"<paths><alias {attributes}/></paths>")
    assert (error.path, error.value) == (path, None)


@pytest.mark.parametrize("attributes, path, value", [
    ('source="a" destination="/b"', "icecast/paths/alias[1]/@source", "a"),
    ('source="/a" destination="b"', "icecast/paths/alias[1]/@destination", "b"),
    ('source="/a" destination="/b" port="http"', "icecast/paths/alias[1]/@port", "http"),
    ('source="/a" destination="/b" port="0"', "icecast/paths/alias[1]/@port", "0"),
])
def test_alias_bad_values_are_refused_with_their_path(attributes: str, path: str, value: str) -> None:
    error = error_for(f"<paths><alias {attributes}/></paths>")
    assert (error.path, error.value) == (path, value)


def test_pidfile_webroot_and_mime_types_are_read() -> None:
    config = parse("<paths><pidfile>/run/f.pid</pidfile><webroot>/w</webroot></paths>"
                   "<mime-types>/etc/other.types</mime-types>")
    assert (config.paths.pidfile, config.paths.webroot, config.mime_types) == (
        "/run/f.pid", "/w", "/etc/other.types")


# ---- <directory> --------------------------------------------------------------------------


def test_directories_are_read_in_order_with_2_4_4_defaults() -> None:
    config = parse("<directory><yp-url>http://a/yp</yp-url><yp-url-timeout>3</yp-url-timeout>"
                   "<touch-interval>60</touch-interval></directory>"
                   "<directory><yp-url>http://b/yp</yp-url></directory>")
    assert config.directories == (Directory("http://a/yp", 3, 60),
                                  Directory("http://b/yp", DEFAULT_YP_TIMEOUT, MIN_YP_TOUCH_INTERVAL))


def test_directory_timeout_outside_2_4_4s_range_becomes_6_with_a_warning() -> None:
    # Debian's sample suggests 15; 2.4.4 then uses 6 s (src/yp.c: yp_recheck_config).
    low, high = YP_TIMEOUT_RANGE
    config = parse(f"<directory><yp-url>http://a/</yp-url><yp-url-timeout>{high + 5}</yp-url-timeout>"
                   "</directory>")
    assert config.directories[0].yp_url_timeout == DEFAULT_YP_TIMEOUT
    assert f"icecast/directory[1]/yp-url-timeout: {high + 5} is outside {low} to {high} s: " \
           f"{DEFAULT_YP_TIMEOUT} s applies, as in 2.4.4" in config.warnings


def test_directory_touch_interval_below_30_becomes_30_with_a_warning() -> None:
    config = parse("<directory><yp-url>http://a/</yp-url><touch-interval>5</touch-interval></directory>")
    assert config.directories[0].touch_interval == MIN_YP_TOUCH_INTERVAL
    assert any(w.startswith("icecast/directory[1]/touch-interval: 5 is below 30 s") for w in config.warnings)


def test_directory_needs_an_http_url() -> None:
    assert error_for("<directory><yp-url-timeout>5</yp-url-timeout></directory>").path == \
        "icecast/directory[1]/yp-url"
    error = error_for("<directory><yp-url>dir.xiph.org</yp-url></directory>")
    assert (error.path, error.value) == ("icecast/directory[1]/yp-url", "dir.xiph.org")


def test_directories_beyond_the_2_4_4_maximum_are_dropped_with_a_warning() -> None:
    blocks = "".join(f"<directory><yp-url>http://d{n}/</yp-url></directory>"
                     for n in range(MAX_YP_DIRECTORIES + 1))
    config = parse(blocks)
    assert len(config.directories) == MAX_YP_DIRECTORIES
    assert f"icecast/directory[{MAX_YP_DIRECTORIES + 1}]: ignored: 2.4.4 lists in at most " \
           f"{MAX_YP_DIRECTORIES} directories" in config.warnings


# ---- <logging> ----------------------------------------------------------------------------


def test_playlistlog_and_rotation_elements_are_read() -> None:
    config = parse("<logging><playlistlog>playlist.log</playlistlog><logsize>10000</logsize>"
                   "<logarchive>1</logarchive></logging>")
    assert (config.logging.playlistlog, config.logging.logsize, config.logging.logarchive) == (
        "playlist.log", 10000, True)


def test_logsize_is_a_non_negative_number() -> None:
    error = error_for("<logging><logsize>big</logsize></logging>")
    assert (error.path, error.value) == ("icecast/logging/logsize", "big")


# ---- <mount> ------------------------------------------------------------------------------


def test_mount_scripts_dump_file_and_intro_resolve_like_the_other_fields() -> None:
    # 2.4.4 merges all four from the default block (src/cfgfile.c: merge_mounts).
    config = parse('<mount type="default"><on-connect>/bin/up</on-connect><intro>/i.ogg</intro></mount>'
                   "<mount><mount-name>/a</mount-name><dump-file>/d/%F.ogg</dump-file>"
                   "<on-disconnect>/bin/down</on-disconnect></mount>")
    mount = config.resolve_mount("/a")
    assert (mount.on_connect, mount.on_disconnect, mount.dump_file, mount.intro) == (
        "/bin/up", "/bin/down", "/d/%F.ogg", "/i.ogg")
    assert config.resolve_mount("/other").dump_file is None


def test_empty_script_is_refused() -> None:
    error = error_for("<mount><mount-name>/a</mount-name><on-connect></on-connect></mount>")
    assert (error.path, error.value) == ("icecast/mount[1]/on-connect", "")
