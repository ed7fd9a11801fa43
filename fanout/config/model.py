"""The parsed configuration: frozen dataclasses, one per ``icecast.xml`` section.

Every default is Icecast 2.4.4's (PROTOCOL.md §7), written once, on the field. ``Config()``
with no arguments is therefore what 2.4.4 runs with for ``<icecast/>``. Nothing here does
IO; ``loader.py`` builds these from XML and ``defaults.py`` builds the no-argument one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fanout import __version__
from fanout.protocol.identity import default_server_id

from .hosting import Alias, Directory, Security
from .mounts import HttpHeader, Inherited, MountConfig, ResolvedMount, resolve_mount

DEFAULT_PORT = 8000
FALLBACK_DEPTH = 10  # levels of <fallback-mount> a listener may be passed down (2.4.4)
DEFAULT_MASTER_UPDATE_INTERVAL = 120  # seconds; 2.4.4 also waits this long to retry a relay
DEFAULT_RELAY_USER = "relay"  # 2.4.4: both <relay-user> and <master-username>
DEFAULT_RELAY_SERVER = "127.0.0.1"  # 2.4.4: <relay><server> when absent
DEFAULT_RELAY_MOUNT = "/"  # upstream path when <mount> is absent; "/" suits Shoutcast v1
DEFAULT_UPSTREAM_PORT = 80  # 2.5 <upstream><port>; a 2.4 flat <relay> has none (§3.1)
DEFAULT_CONNECTIONS_PER_IP = 1000  # <limits><connections-per-ip> (ours; see Limits)
DEFAULT_MIME_TYPES = "/etc/mime.types"  # 2.4.4's <mime-types>: file extension → Content-Type

__all__ = [
    "Authentication", "Config", "HttpHeader", "Limits", "ListenSocket", "Logging",
    "MasterConfig", "MountConfig", "Paths", "RelayConfig", "ResolvedMount",
]


@dataclass(frozen=True, slots=True)
class ListenSocket:
    """One ``<listen-socket>`` (or the legacy top-level ``<port>``/``<bind-address>``)."""

    port: int = DEFAULT_PORT
    bind_address: str | None = None  # None: every address
    shoutcast_compat: bool = False  # this port speaks the Shoutcast source protocol
    shoutcast_mount: str | None = None  # mount a Shoutcast source on this port feeds
    so_sndbuf: int = 0  # SO_SNDBUF for accepted sockets; 0 leaves the kernel's
    # issue 12 (fleet.py): TLS on this port (needs <paths><ssl-certificate>); every
    # connection opens with a PROXY v1/v2 header from a load balancer.
    ssl: bool = False
    proxy_protocol: bool = False


@dataclass(frozen=True, slots=True)
class Limits:
    """``<limits>``."""

    clients: int = 256
    sources: int = 16
    queue_size: int = 512000  # bytes a listener may lag before it is dropped
    burst_on_connect: bool = True
    burst_size: int = 65536  # bytes sent at once to a new listener
    source_timeout: int = 10  # seconds of upstream silence before a source is dropped
    header_timeout: int = 15  # seconds for a request head to arrive
    client_timeout: int = 30  # parsed, unused by 2.4.4 too
    # issue 12 (fleet.py): connections one client address may hold at once, across every
    # worker (DESIGN invariant 6); the next one is refused 403. Room for a carrier-grade
    # NAT's listeners behind one address, not for one host taking a whole server.
    connections_per_ip: int = DEFAULT_CONNECTIONS_PER_IP

    @property
    def effective_burst_size(self) -> int:
        """The server-wide burst: ``<burst-on-connect>0`` forces it to 0 (2.4.4)."""
        return self.burst_size if self.burst_on_connect else 0


@dataclass(frozen=True, slots=True)
class Authentication:
    """``<authentication>``. No password has a default: unset means every login fails."""

    source_password: str | None = None
    admin_user: str | None = None
    admin_password: str | None = None
    relay_user: str = DEFAULT_RELAY_USER
    relay_password: str | None = None


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """One ``<relay>``: a single upstream mount pulled into ``local_mount``.

    ``server``/``port``/``mount`` is the upstream tried first; ``backups`` the further
    ``(server, port, mount)`` of the KH ``<host>``/``<master>`` and 2.5 ``<upstream>``
    forms, in the order to try them.
    """

    server: str
    port: int  # no default in 2.4.4 (0 never connects): the loader requires it
    mount: str = DEFAULT_RELAY_MOUNT
    local_mount: str = ""  # "" means the same as ``mount``
    username: str | None = None  # Basic auth sent upstream, only if both are set
    password: str | None = None
    relay_shoutcast_metadata: bool = True  # ask upstream for ICY metadata
    # The loader passes <relays-on-demand> *as read so far in the file*: 2.4.4 copies the
    # global value when it meets <relay>, so the global must come first (PROTOCOL.md §8.24).
    on_demand: bool = False
    backups: tuple[tuple[str, int, str], ...] = ()
    # Seconds before retrying after every upstream failed. The loader passes the file's
    # <master-update-interval> (2.4.4's retry delay) unless KH <retry-delay> is given.
    retry_delay: int = DEFAULT_MASTER_UPDATE_INTERVAL
    run_on: int = 0  # KH: seconds an on-demand relay lingers at 0 listeners (2.4.4: none)
    enabled: bool = True  # KH <enable>0: reserve the mount, never connect
    # issue 12: the (server, port)s of the upstreams above reached over https (KH <ssl>)
    tls_upstreams: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        if not self.local_mount:
            object.__setattr__(self, "local_mount", self.mount)


@dataclass(frozen=True, slots=True)
class MasterConfig:
    """Master-slave relaying: poll ``server:port`` for its mount list (PROTOCOL.md §1.1)."""

    server: str
    port: int
    username: str = DEFAULT_RELAY_USER
    password: str | None = None  # None: a 2.4.4 master answers every poll with 401
    update_interval: int = DEFAULT_MASTER_UPDATE_INTERVAL
    on_demand: bool = False  # <relays-on-demand> (final value) or KH <master><on-demand>
    redirect: bool = False  # KH <master-redirect>: register for listener redirects
    ssl_port: int = 0  # KH <master-ssl-port>: poll and relay the master over TLS there; 0: plain

    @property
    def upstream_port(self) -> int:
        """The port polled and relayed: the TLS one when set (KH)."""
        return self.ssl_port or self.port

    @property
    def tls(self) -> bool:
        return self.ssl_port > 0


@dataclass(frozen=True, slots=True)
class Paths:
    """``<paths>``. None: not set (2.4.4 then uses compiled-in /usr/local/icecast/… paths)."""

    logdir: str | None = None
    pidfile: str | None = None
    webroot: str | None = None
    adminroot: str | None = None
    basedir: str | None = None  # the new root when <security><chroot> is on
    aliases: tuple[Alias, ...] = ()  # <alias> blocks, file order (the first match wins)
    # Files of addresses, one a line: connections from a <deny-ip> one are dropped
    # unanswered; with an <allow-ip> file, only its addresses are served (address_files.py).
    allow_ip: str | None = None
    deny_ip: str | None = None
    # issue 12 (fleet.py). TLS: the PEM certificate chain, with the key unless
    # ssl_private_key names its own file; OpenSSL's cipher list for TLS 1.2 (None: Python's
    # defaults, not 2.4.4's list, which still allows 3DES; TLS 1.3 suites are all AEAD).
    ssl_certificate: str | None = None
    ssl_private_key: str | None = None  # KH
    ssl_allowed_ciphers: str | None = None
    # Upstreams (master, relays) over TLS: verify their certificate (against these CAs
    # instead of the system's, to pin a private CA or a self-signed certificate).
    ssl_upstream_verify: bool = True
    ssl_upstream_cafile: str | None = None
    x_forwarded_for: tuple[str, ...] = ()  # KH: proxies whose X-Forwarded-For is believed


@dataclass(frozen=True, slots=True)
class Logging:
    """``<logging>``; file names are relative to ``Paths.logdir``."""

    accesslog: str = "access.log"
    errorlog: str = "error.log"
    loglevel: int = 3  # 1 error, 2 warn, 3 info, 4 debug
    playlistlog: str | None = None  # a line per title change; None: no playlist log
    logsize: int | None = None  # KiB after which 2.4.4 rotates a log file; None: its default
    logarchive: bool = False  # 2.4.4 names rotated logs by date instead of ".old"


@dataclass(frozen=True, slots=True)
class Config:
    """A whole ``icecast.xml``."""

    hostname: str = "localhost"  # advertised in URLs, playlists and KH redirect registration
    location: str = "Earth"
    admin: str = "icemaster@localhost"
    # Server: header, relay User-Agent, stats: "Icecast 2.4.4 (fanout 0.1.0)", which
    # clients looking for "Icecast" still find (fanout.protocol.identity)
    server_id: str = default_server_id(__version__)
    listen_sockets: tuple[ListenSocket, ...] = (ListenSocket(),)
    limits: Limits = field(default_factory=Limits)
    authentication: Authentication = field(default_factory=Authentication)
    http_headers: tuple[HttpHeader, ...] = ()  # sent on every response (status permitting)
    mounts: tuple[MountConfig, ...] = ()  # normal blocks, file order (the lookup order)
    default_mount: MountConfig | None = None  # the type="default" block
    relays: tuple[RelayConfig, ...] = ()
    master: MasterConfig | None = None  # set when master-server and a port > 0 are given
    relays_on_demand: bool = False  # final value; see RelayConfig.on_demand for the quirk
    max_redirect_slaves: int = 0  # KH: slaves that may register for redirects (0: none)
    master_redirect: bool = False  # KH: as a slave, register with the master for redirects
    redirects: tuple[tuple[str, int], ...] = ()  # KH <redirect>: static (host, port) targets
    # issue 12 (fleet.py): "when-full" redirects would-be refusals (KH), "always" every
    # listener; the listeners this server offers its master's redirects (0: <clients>).
    redirect_mode: str = "when-full"
    master_redirect_capacity: int = 0
    paths: Paths = field(default_factory=Paths)
    logging: Logging = field(default_factory=Logging)
    fileserve: bool = True
    icelogin: bool = False  # also accept the deprecated ice-password header
    shoutcast_mount: str = "/stream"  # mount of Shoutcast sources on compat ports
    mime_types: str = DEFAULT_MIME_TYPES  # mime.types file naming webroot files' types
    security: Security = field(default_factory=Security)
    directories: tuple[Directory, ...] = ()  # YP directories public mounts are listed in
    warnings: tuple[str, ...] = ()  # every warning raised while parsing, in the order found
    source: str = "<built-in>"  # the file this came from

    @property
    def port(self) -> int:
        """The server's port, as 2.4.4 defines it: the first listen socket's."""
        return self.listen_sockets[0].port

    def resolve_mount(self, name: str) -> ResolvedMount:
        """Return the effective settings of mount ``name`` (rules in ``mounts.py``)."""
        inherited = Inherited(
            password=self.authentication.source_password,
            burst_size=self.limits.effective_burst_size,
            queue_size=self.limits.queue_size,
            source_timeout=self.limits.source_timeout,
        )
        return resolve_mount(self.mounts, self.default_mount, name, inherited)

    def fallback_chain(self, name: str) -> tuple[str, ...]:
        """The mounts `name`'s listeners may fall back to, nearest first: its
        `<fallback-mount>`, that one's, … at most FALLBACK_DEPTH deep, never `name` again
        nor any mount twice (2.4.4 follows up to 10 levels, §5.1)."""
        chain: list[str] = []
        current = name
        while len(chain) < FALLBACK_DEPTH:
            target = self.resolve_mount(current).fallback_mount
            if not target or target == name or target in chain:
                break
            chain.append(target)
            current = target
        return tuple(chain)
