"""A real Icecast 2.4.4 for comparison, and the icecast.xml both servers are given.

``render_icecast_xml`` writes the config the bench gives *both* servers (fanout reads
the same elements as Icecast); a slave's config also names its master (``MasterLink``). ``start_icecast`` runs ``icecast2 -c <file>`` as the
``icecast2`` user (Icecast refuses to run as root) in a temp dir that user owns, with
RLIMIT_NOFILE raised to the hard limit, and waits until it serves.
"""

from __future__ import annotations

import os
import pwd
import resource
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from fanout.bench.serving import ServerProcess, ServerStartError, free_port
from fanout.bench.tlsproxy import self_signed

ICECAST_USER = "icecast2"  # created by the Debian package
ICECAST_SHARE = Path("/usr/share/icecast2")  # web/ (status-json.xsl) and admin/
MAX_CLIENTS = 30_000  # above what one process can hold: the fd limit decides
# Icecast's default is 16; relay-1000 needs 1,000 (fanout counts relayed mounts against
# it too). The limit is not what the bench measures.
MAX_SOURCES = 2_000
QUEUE_SIZE = 524_288  # Icecast's default
CERTIFICATE = "bench-tls.pem"  # --tls: certificate and key, in the server's work directory
BURST_SIZE = 65_535  # Icecast's default


@dataclass(frozen=True, slots=True)
class MasterLink:
    """A slave's <master-*> elements: poll this master's stream list and relay every mount."""

    host: str
    port: int
    password: str  # the master's relay password (the user is Icecast's default, "relay")
    update_interval: int  # s between two polls (<master-update-interval>)


@dataclass(frozen=True, slots=True)
class BenchServerConfig:
    """What the generated icecast.xml says; the same for both servers. The admin
    password is also the relay password (what a slave of this server polls with)."""

    port: int
    source_password: str
    admin_password: str
    host: str = "127.0.0.1"
    clients: int = MAX_CLIENTS
    sources: int = MAX_SOURCES
    master: MasterLink | None = None
    tls_port: int = 0  # --tls: a second <listen-socket> with <ssl>1 (0: none)


def new_config(host: str = "127.0.0.1", master: MasterLink | None = None,
               tls: bool = False) -> BenchServerConfig:
    """Return a config with a free port (and a free TLS port if `tls`) and fresh passwords."""
    return BenchServerConfig(port=free_port(host), source_password=secrets.token_hex(8),
                             admin_password=secrets.token_hex(8), host=host, master=master,
                             tls_port=free_port(host) if tls else 0)


def _tls_socket_xml(config: BenchServerConfig) -> str:
    if not config.tls_port:
        return ""
    return (f"  <listen-socket>\n    <port>{config.tls_port}</port>\n"
            f"    <bind-address>{escape(config.host)}</bind-address>\n    <ssl>1</ssl>\n"
            "  </listen-socket>\n")


def _certificate_xml(config: BenchServerConfig, workdir: Path) -> str:
    if not config.tls_port:
        return ""
    return f"    <ssl-certificate>{escape(str(workdir / CERTIFICATE))}</ssl-certificate>\n"


def _master_xml(master: MasterLink | None) -> str:
    if master is None:
        return ""
    return (f"  <master-server>{escape(master.host)}</master-server>\n"
            f"  <master-server-port>{master.port}</master-server-port>\n"
            f"  <master-update-interval>{master.update_interval}</master-update-interval>\n"
            f"  <master-password>{escape(master.password)}</master-password>\n")


def render_icecast_xml(config: BenchServerConfig, workdir: Path) -> str:
    """Return the icecast.xml text for ``config``, logging into ``workdir``."""
    def e(value: object) -> str:
        return escape(str(value))

    return f"""<icecast>
  <location>fanout bench</location>
  <admin>bench@localhost</admin>
  <hostname>{e(config.host)}</hostname>
  <limits>
    <clients>{config.clients}</clients>
    <sources>{config.sources}</sources>
    <queue-size>{QUEUE_SIZE}</queue-size>
    <client-timeout>30</client-timeout>
    <header-timeout>15</header-timeout>
    <source-timeout>10</source-timeout>
    <burst-on-connect>1</burst-on-connect>
    <burst-size>{BURST_SIZE}</burst-size>
    <connections-per-ip>{config.clients}</connections-per-ip>
  </limits>
  <authentication>
    <source-password>{e(config.source_password)}</source-password>
    <relay-password>{e(config.admin_password)}</relay-password>
    <admin-user>admin</admin-user>
    <admin-password>{e(config.admin_password)}</admin-password>
  </authentication>
  <listen-socket>
    <port>{config.port}</port>
    <bind-address>{e(config.host)}</bind-address>
  </listen-socket>
{_tls_socket_xml(config)}{_master_xml(config.master)}  <fileserve>1</fileserve>
  <paths>
    <basedir>{e(ICECAST_SHARE)}</basedir>
    <logdir>{e(workdir)}</logdir>
    <webroot>{e(ICECAST_SHARE / "web")}</webroot>
    <adminroot>{e(ICECAST_SHARE / "admin")}</adminroot>
    <pidfile>{e(workdir / "icecast.pid")}</pidfile>
{_certificate_xml(config, workdir)}  </paths>
  <logging>
    <accesslog>access.log</accesslog>
    <errorlog>error.log</errorlog>
    <loglevel>2</loglevel>
    <logsize>100000</logsize>
  </logging>
  <security>
    <chroot>0</chroot>
  </security>
</icecast>
"""


def write_config(config: BenchServerConfig, prefix: str, owner: str | None = None) -> Path:
    """Create a temp dir (owned by ``owner`` if given) holding icecast.xml; return the dir."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    (workdir / "icecast.xml").write_text(render_icecast_xml(config, workdir))
    files = [workdir, workdir / "icecast.xml"]
    if config.tls_port:
        files.append(self_signed(workdir, config.host))
    if owner is not None:
        user = pwd.getpwnam(owner)
        for path in files:
            os.chown(path, user.pw_uid, user.pw_gid)
    return workdir


def icecast_binary() -> str:
    """Return the path of icecast2; raise ServerStartError if it is not installed."""
    binary = shutil.which("icecast2") or shutil.which("icecast2", path="/usr/bin:/usr/sbin")
    if binary is None:
        raise ServerStartError("icecast2 is not installed (Debian: apt-get install icecast2)")
    return binary


def _run_as() -> pwd.struct_passwd | None:
    """Return the user to run Icecast as: icecast2 when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(ICECAST_USER)
    except KeyError:
        raise ServerStartError(f"running as root but there is no {ICECAST_USER!r} user "
                               "to run Icecast as (it refuses to run as root)") from None


def raise_nofile_limit() -> None:
    """Raise the soft open-files limit to the hard one (runs in the child before exec)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def start_icecast(config: BenchServerConfig) -> ServerProcess:
    """Start Icecast with ``config`` and return it once it serves.

    Raises ServerStartError if icecast2 is missing, exits, or never answers.
    """
    binary = icecast_binary()
    user = _run_as()
    workdir = write_config(config, "fanout-bench-icecast-", user.pw_name if user else None)
    log_path = workdir / "stdout.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [binary, "-c", str(workdir / "icecast.xml")], stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, cwd=workdir, preexec_fn=raise_nofile_limit,
            user=user.pw_uid if user else None, group=user.pw_gid if user else None,
            extra_groups=[] if user else None)
    return ServerProcess("icecast", process, config.host, config.port,
                         config.source_password, workdir, log_path,
                         config.admin_password).serving()
