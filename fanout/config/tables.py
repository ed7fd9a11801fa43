"""The tag tables: every element of ``icecast.xml`` we accept, its converter and its field.

Read a table as "tag → converter → field"; the field is the tag with ``-`` → ``_`` unless
named. Defaults are not here: they are on the dataclass fields in ``model.py``. Elements
recognised but not read are listed once, in ``NOT_ACTED_ON``; anything else is warned
about with its XML path. Whether fanout *implements* an element it reads (or why it has
no effect) is said in ``support.py``. ``config.sample.xml`` documents every row.
"""

from __future__ import annotations

from .fleet import KH_MASTER_TAGS, LIMITS_TAGS, LISTEN_SOCKET_TAGS, PATHS_TAGS, ROOT_TAGS
from .builders import (
    as_is, build_header, build_headers, build_listen_socket, build_mount, build_redirect,
    read_relays_on_demand,
)
from .converters import (
    BYTES, COUNT, HTTP_STATUS, INHERIT_OR_BYTES, LISTENER_LIMIT, LISTEN_PORT, LOG_LEVEL, PORT, PORT_OR_OFF,
    POSITIVE_SECONDS, SECONDS, boolean, choice, header_name, header_value, http_url, integer,
    mount_name, no_yp_flag, public_flag, string,
)
from .hosting import Security, build_alias, build_changeowner, build_directory
from .listener_auth import build_auth_option, build_listener_auth
from .model import Authentication, Limits, Logging, Paths
from .relays import build_relay, build_relay_host, build_upstream
from .tagtable import MERGE, Tag, TagTable, accepted, element, keywords, section, table, value

# Recognised, not read: accepted children and all (support.py says why, or warns). By section.
NOT_ACTED_ON: dict[str, tuple[str, ...]] = {
    "icecast": ("master-bind", "master-relay-auth"),
    "limits": ("threadpool", "max-listeners", "max-bandwidth", "min-queue-size", "workers",
               "inactivity-timeout"),  # threadpool: 2.4.4 ignores it too; the rest are KH
    "paths": ("mime-types",),
    "header": ("@type",),
    "directory": ("server",),  # 2.4.4 reads <server><host> but never uses it
    "mount": ("max-bandwidth",),
    "relay": ("bind", "timeout", "interval", "http-headers"),
    "relay host": ("timeout", "bind", "http-headers"),  # KH <host>/<master>
    "upstream": ("bind",),  # 2.5
    "master": ("bind", "relay-auth", "retry-delay", "run-on"),  # KH root <master>
}


def _not_acted_on(section_name: str) -> tuple[Tag, ...]:
    return accepted(*NOT_ACTED_ON[section_name])


LIMITS = table(
    value("clients", COUNT),
    value("sources", COUNT),
    value("queue-size", BYTES),
    value("burst-on-connect", boolean),
    value("burst-size", BYTES),
    value("source-timeout", POSITIVE_SECONDS),
    value("header-timeout", POSITIVE_SECONDS),
    value("client-timeout", POSITIVE_SECONDS),
    LIMITS_TAGS,  # <connections-per-ip>
    _not_acted_on("limits"),
)

AUTHENTICATION = table(
    value("source-password", string),
    value("admin-user", string),
    value("admin-password", string),
    value("relay-user", string),
    value("relay-password", string),
)

LISTEN_SOCKET = table(
    value("port", LISTEN_PORT),
    value("bind-address", string),
    value("shoutcast-compat", boolean),
    value("shoutcast-mount", mount_name),
    value("so-sndbuf", BYTES),
    LISTEN_SOCKET_TAGS,  # <ssl>, <proxy-protocol>
)

HEADER = table(
    value("@name", header_name),
    value("@value", header_value),
    value("@status", HTTP_STATUS),
    _not_acted_on("header"),
)

HTTP_HEADERS = table(
    element("header", section(build_header, HEADER), field="headers", repeat=True),
)

AUTH_OPTION = table(  # <mount><authentication><option name= value=/>
    value("@name", string),
    value("@value", header_value),  # may be empty; each option's own converter checks it
)

LISTENER_AUTH = table(  # <mount><authentication type="htpasswd|url">
    value("@type", choice("htpasswd", "url"), field="type"),
    element("option", section(build_auth_option, AUTH_OPTION), field="options", repeat=True),
)

MOUNT = table(
    value("@type", choice("normal", "default"), field="type"),
    value("mount-name", mount_name),
    value("username", string),
    value("password", string),
    value("max-listeners", LISTENER_LIMIT),
    value("max-listener-duration", SECONDS),
    value("hidden", boolean),
    value("public", public_flag),
    value("no-yp", no_yp_flag, field="public"),  # legacy spelling of <public>0</public>
    value("burst-size", INHERIT_OR_BYTES),
    value("queue-size", BYTES),
    value("source-timeout", SECONDS),
    value("mp3-metadata-interval", INHERIT_OR_BYTES),
    value("charset", string),
    value("stream-name", string),
    value("stream-description", string),
    value("stream-url", string),
    value("genre", string),
    value("bitrate", string),
    value("type", string, field="content_type"),
    value("subtype", string),
    value("fallback-mount", mount_name),
    value("fallback-override", boolean),
    value("fallback-when-full", boolean),
    value("no-mount", boolean),
    value("intro", string),
    element("http-headers", section(build_headers, HTTP_HEADERS)),
    element("authentication", section(build_listener_auth, LISTENER_AUTH)),
    # issue 11: read and checked; support.py says which are implemented
    value("dump-file", string),
    value("on-connect", string),
    value("on-disconnect", string),
    value("cluster-password", string),
    _not_acted_on("mount"),
)

RELAY_HOST = table(  # KH <relay><host> and <relay><master>
    value("server", string),
    value("ip", string, field="server"),
    value("port", PORT),
    value("mount", mount_name),
    value("priority", integer(1)),
    value("ssl", boolean),  # issue 12: https to this host (KH)
    value("tls", boolean, field="ssl"),  # KH spelling
    _not_acted_on("relay host"),
)

UPSTREAM = table(  # 2.5 <relay><upstream type="normal|default">
    value("@type", choice("normal", "default"), field="type"),
    value("server", string),
    value("port", PORT),
    value("mount", mount_name),
    value("username", string),
    value("password", string),
    value("relay-shoutcast-metadata", boolean),
    _not_acted_on("upstream"),
)

RELAY = table(
    value("server", string),
    value("ip", string, field="server"),  # KH spelling
    value("port", PORT),
    value("mount", mount_name),
    value("local-mount", mount_name),
    value("username", string),
    value("password", string),
    value("relay-shoutcast-metadata", boolean),
    value("relay-icy-metadata", boolean, field="relay_shoutcast_metadata"),  # KH spelling
    value("on-demand", boolean),
    value("retry-delay", POSITIVE_SECONDS),  # KH
    value("run-on", SECONDS),  # KH
    value("enable", boolean, field="enabled"),  # KH
    element("host", section(build_relay_host, RELAY_HOST), field="hosts", repeat=True),
    element("master", section(build_relay_host, RELAY_HOST), field="hosts", repeat=True),
    element("upstream", section(build_upstream, UPSTREAM), field="upstreams", repeat=True),
    _not_acted_on("relay"),
)

KH_MASTER = table(  # KH root <master>: another spelling of the master-* elements
    value("server", string, field="master_server"),
    value("port", PORT_OR_OFF, field="master_server_port"),
    value("username", string, field="master_username"),
    value("password", string, field="master_password"),
    value("interval", POSITIVE_SECONDS, field="master_update_interval"),
    value("redirect", boolean, field="master_redirect"),
    value("on-demand", boolean, field="master_on_demand"),
    KH_MASTER_TAGS,  # <ssl-port>
    _not_acted_on("master"),
)

REDIRECT = table(  # KH static redirect target
    value("host", string),
    value("port", PORT),
)

# ---- hosting: <security>, <paths><alias>, <directory> (issue 11) ------------------------

CHANGEOWNER = table(
    value("user", string),
    value("group", string),
)

SECURITY = table(
    value("chroot", boolean),
    element("changeowner", section(build_changeowner, CHANGEOWNER)),
)

ALIAS = table(
    value("@source", mount_name),
    value("@destination", mount_name),
    value("@dest", mount_name, field="destination"),  # 2.4.4's other spelling
    value("@port", PORT),
    value("@bind-address", string),
)

DIRECTORY = table(
    value("yp-url", http_url),
    value("yp-url-timeout", SECONDS),
    value("touch-interval", SECONDS),
    _not_acted_on("directory"),
)

PATHS = table(
    value("basedir", string),
    value("logdir", string),
    value("pidfile", string),
    value("webroot", string),
    value("adminroot", string),
    value("allow-ip", string),
    value("deny-ip", string),
    element("alias", section(build_alias, ALIAS), field="aliases", repeat=True),
    PATHS_TAGS,  # TLS files and ciphers, upstream verification, <x-forwarded-for>
    _not_acted_on("paths"),
)

LOGGING = table(
    value("accesslog", string),
    value("errorlog", string),
    value("loglevel", LOG_LEVEL),
    value("playlistlog", string),
    value("logsize", COUNT),  # KiB
    value("logarchive", boolean),
)

ROOT = table(
    value("hostname", string),
    value("location", string),
    value("admin", string),
    value("server-id", string),
    element("listen-socket", section(build_listen_socket, LISTEN_SOCKET), "socket_blocks", True),
    value("port", PORT, field="legacy_port"),
    value("bind-address", string, field="legacy_bind_address"),
    value("source-password", string, field="legacy_source_password"),  # pre-<authentication>
    element("limits", section(keywords(Limits), LIMITS)),
    element("authentication", section(keywords(Authentication), AUTHENTICATION)),
    element("http-headers", section(build_headers, HTTP_HEADERS)),
    element("mount", section(build_mount, MOUNT), field="mount_blocks", repeat=True),
    element("relay", section(build_relay, RELAY), field="relay_drafts", repeat=True),
    value("master-server", string),
    value("master-server-port", PORT_OR_OFF),
    value("master-username", string),
    value("master-password", string),
    value("master-update-interval", POSITIVE_SECONDS),
    Tag("relays-on-demand", "relays_on_demand", read_relays_on_demand),
    value("max-redirect-slaves", COUNT),  # KH
    value("master-redirect", boolean),  # KH
    element("master", section(as_is, KH_MASTER), field=MERGE),  # KH
    element("redirect", section(build_redirect, REDIRECT), field="redirects", repeat=True),  # KH
    ROOT_TAGS,  # <redirect-mode>, <master-redirect-capacity>, <master-ssl-port>
    element("paths", section(keywords(Paths), PATHS)),
    element("logging", section(keywords(Logging), LOGGING)),
    value("fileserve", boolean),
    value("icelogin", boolean),
    value("shoutcast-mount", mount_name),
    value("mime-types", string),
    element("security", section(keywords(Security), SECURITY)),
    element("directory", section(build_directory, DIRECTORY), field="directory_blocks", repeat=True),
    _not_acted_on("icecast"),
)

# Every table by the element it reads, for tests and documentation checks.
ALL_TABLES: dict[str, TagTable] = {
    "icecast": ROOT, "limits": LIMITS, "authentication": AUTHENTICATION,
    "listen-socket": LISTEN_SOCKET, "http-headers": HTTP_HEADERS, "header": HEADER,
    "mount": MOUNT, "relay": RELAY, "relay host": RELAY_HOST, "upstream": UPSTREAM,
    "master": KH_MASTER, "redirect": REDIRECT, "paths": PATHS, "logging": LOGGING,
    "mount authentication": LISTENER_AUTH, "auth option": AUTH_OPTION,
    "security": SECURITY, "changeowner": CHANGEOWNER, "alias": ALIAS, "directory": DIRECTORY,
}
