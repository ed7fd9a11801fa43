"""What a worker's connections need from the config beyond their spec (issue 12): the
TLS certificate of its `<ssl>` ports and the proxies it trusts (`edge.py` uses both), and
the checks of https upstreams' certificates (`httpclient.UPSTREAM_TLS`)."""
from __future__ import annotations

import logging

from fanout.config import Config
from fanout.httpclient import configure_upstream_tls
from fanout.protocol.forwarded import TrustedProxies
from fanout.tls import ServerTls, TlsError

log = logging.getLogger("fanout.client")


class Certificates:
    """The TLS certificate every `<ssl>` port of this worker shakes hands with, reloaded
    with each config. A file that does not load keeps the running certificate: the
    supervisor checked it first and said why in the log (`startup.check_tls`), so a
    worker says it only at debug level."""

    def __init__(self) -> None:
        self.server: ServerTls | None = None
        self.trusted = TrustedProxies()

    def configure(self, config: Config) -> None:
        self.trusted = TrustedProxies.from_config(config.paths.x_forwarded_for)
        configure_upstream_tls(config.paths)  # this worker's https connections
        if not any(spec.ssl for spec in config.listen_sockets):
            return
        try:
            if self.server is None:
                self.server = ServerTls(config.paths)
            else:
                self.server.reload(config.paths)
        except TlsError as exc:
            log.debug("TLS certificate not (re)loaded here: %s", exc)
