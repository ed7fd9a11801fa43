"""Start-up of the supervisor: what must succeed before anything is served or said.

Every failure here is a `StartupError`: one line for the operator and the exit status
(EXIT_CONFIG for what the configuration asks and cannot be had, EXIT_STARTUP for what
the machine refuses), raised before any password of the built-in config is printed.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import resource
import socket

from fanout import logs
from fanout.config import Config, ConfigError, parse_config
from fanout.protocol.log_rotation import Rotation
from fanout.tls import TlsError, client_context, server_context

log = logging.getLogger("fanout")

# Exit statuses of the whole server.
EXIT_OK = 0
EXIT_CONFIG = 2  # usage or configuration: nothing was started
EXIT_STARTUP = 3  # a runtime start-up failure: a socket, a worker that cannot boot
# Where the kernel's ceiling for a process's open files is, when the hard limit is "unlimited".
NR_OPEN_PATH = "/proc/sys/fs/nr_open"
# Listen backlog: storms of thousands of listeners arrive at once.
BACKLOG = 4096


class StartupError(Exception):
    """The server cannot start: `message` is one line for the operator, `status` the
    exit status (EXIT_CONFIG or EXIT_STARTUP)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def load_config(path: str) -> Config:
    """Read and parse the file at ``path`` (at start and on every SIGHUP).

    Raises ``ConfigError`` for an unreadable file (its path as ``.path``), malformed XML
    or a bad value; warnings (unknown elements, …) are in ``Config.warnings``.
    """
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as error:
        raise ConfigError(path, error.strerror or str(error), "a readable file") from None
    return parse_config(data, source=path)


def raise_open_file_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit (workers inherit it); returns
    (the soft limit before, the soft limit now)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if hard == resource.RLIM_INFINITY:  # the kernel caps it at nr_open anyway
        try:
            with open(NR_OPEN_PATH) as file:
                target = int(file.read())
        except (OSError, ValueError):
            return soft, soft
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (OSError, ValueError):
        return soft, soft
    return soft, target


def bind_listeners(config: Config) -> list[socket.socket]:
    """Bind every <listen-socket> once; raises StartupError naming the address on failure."""
    sockets: list[socket.socket] = []
    for spec in config.listen_sockets:
        address = spec.bind_address or "0.0.0.0"
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as exc:
            raise StartupError(f"cannot listen on {address}:{spec.port}: {exc.strerror or exc}",
                               EXIT_STARTUP) from None
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, spec.port))
        except (OSError, OverflowError) as exc:  # Overflow: a port past 65535
            sock.close()
            for bound in sockets:
                bound.close()
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise StartupError(f"cannot listen on {address}:{spec.port}: {reason}",
                               EXIT_STARTUP) from None
        sock.listen(BACKLOG)
        # Workers race to accept on this socket; the loser must get EAGAIN, not block its
        # hub. O_NONBLOCK lives on the shared open file, so this holds in every worker.
        sock.setblocking(False)
        sock.set_inheritable(True)
        sockets.append(sock)
    return sockets


def open_log_files(config: Config, role: str) -> None:
    """Log to the config's files (opened once now, so a bad one fails here and not at the
    first log line); raises StartupError."""
    paths, logging_ = config.paths, config.logging
    try:
        for name in (logging_.errorlog, logging_.accesslog):
            if paths.logdir is not None:
                open(os.path.join(paths.logdir, name), "a").close()
        logs.configure_files(paths.logdir, logging_.errorlog, logging_.accesslog,
                             logging_.loglevel, role,
                             Rotation.of(logging_.logsize, logging_.logarchive))
    except OSError as exc:
        raise StartupError(f"config error: icecast/paths/logdir: cannot open the log files "
                           f"in {paths.logdir!r}: {exc.strerror or exc}", EXIT_CONFIG) from None


# -- issue 12: the certificate of the <ssl> ports ---------------------------------------------
CERTIFICATE_ELEMENT = "icecast/paths/ssl-certificate"


CAFILE_ELEMENT = "icecast/paths/ssl-upstream-cafile"


def check_tls(config: Config) -> None:
    """The certificate (and key) of the config's `<ssl>` ports load, and so does the CA
    file for https upstreams; raises StartupError (EXIT_CONFIG, one line naming the
    element and why) before anything is bound."""
    if any(spec.ssl for spec in config.listen_sockets):
        try:
            server_context(config.paths)
        except TlsError as exc:
            raise StartupError(f"config error: {CERTIFICATE_ELEMENT}: {exc}", EXIT_CONFIG) from None
    try:
        client_context(config.paths.ssl_upstream_verify, config.paths.ssl_upstream_cafile)
    except TlsError as exc:
        raise StartupError(f"config error: {CAFILE_ELEMENT}: {exc}", EXIT_CONFIG) from None


def tls_for_reload(config: Config, running: Config) -> Config:
    """`config`, or, if its certificate or upstream CA file does not load, `config` with
    the running one's TLS settings (logged in one line): a SIGHUP never leaves TLS ports
    without a certificate."""
    try:
        check_tls(config)
    except StartupError as exc:
        log.error("SIGHUP: keeping the running TLS settings: %s", exc.message)
        old = running.paths
        return dataclasses.replace(config, paths=dataclasses.replace(
            config.paths, ssl_certificate=old.ssl_certificate, ssl_private_key=old.ssl_private_key,
            ssl_allowed_ciphers=old.ssl_allowed_ciphers, ssl_upstream_verify=old.ssl_upstream_verify,
            ssl_upstream_cafile=old.ssl_upstream_cafile))
    return config
