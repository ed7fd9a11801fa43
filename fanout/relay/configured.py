"""The configured single-mount relays, `<relay>` (PROTOCOL.md §3): one pull each.

Theory of operation: `apply(relays)` turns the config's `<relay>` blocks into RelaySpecs
keyed by local mount and reconciles them with the running pulls through the same pure
`plan_relays` the master poller uses, so a SIGHUP restarts exactly the relays whose
upstream, path or options changed and stops the removed ones (their listeners go to the
fallback mount, else are closed), as 2.4.4 does (§3.10). Every configured local mount is
reserved in the registry, enabled or not, connected or not: a source client asking for
it is told 403 "Mountpoint in use" (§3.6). A relay with KH `<enable>0` holds its mount
and never connects. Unlike 2.4.4, which waits `<master-update-interval>` (120 s) after a
failed attempt, retries back off from half a second up to that interval (or KH's
`<retry-delay>`), so a short upstream outage costs seconds, not minutes.
"""
from __future__ import annotations

import logging

from fanout.config import RelayConfig
from fanout.relay.host import RelayHost, RelayRun
from fanout.relay.plan import RelaySpec, plan_relays

log = logging.getLogger("fanout.relay")


def spec_for(relay: RelayConfig) -> RelaySpec:
    """The pull that `relay` describes."""
    credentials = None
    if relay.username is not None and relay.password is not None:
        credentials = (relay.username, relay.password)  # 2.4.4 sends them only if both are set
    return RelaySpec(relay.local_mount, relay.server, relay.port, relay.mount,
                     on_demand=relay.on_demand, credentials=credentials,
                     icy_metadata=relay.relay_shoutcast_metadata, alternates=relay.backups,
                     retry_max=float(max(1, relay.retry_delay)), run_on=float(relay.run_on),
                     tls_upstreams=frozenset(relay.tls_upstreams))


class ConfiguredRelays:
    def __init__(self, host: RelayHost) -> None:
        self.host = host
        self.pulls: dict[str, RelayRun] = {}

    def apply(self, relays: tuple[RelayConfig, ...]) -> frozenset[str]:
        """Run exactly the enabled `relays`; return every configured local mount."""
        desired = {relay.local_mount: spec_for(relay) for relay in relays if relay.enabled}
        running = {name: pull.spec for name, pull in self.pulls.items()}
        plan = plan_relays(desired, running)
        for name in plan.stop:
            log.info("relay %s stopped: its <relay> was removed or changed", name)
            self.pulls.pop(name).stop()
        for spec in plan.start:
            log.info("relay %s from %s%s", spec.mount, spec.url,
                     " (on demand)" if spec.on_demand else "")
            self.pulls[spec.mount] = self.host.start_relay(spec, _nothing)
        for relay in relays:
            if not relay.enabled:
                log.info("relay %s is disabled (<enable>0): the mount is reserved, never "
                         "connected", relay.local_mount)
        return frozenset(relay.local_mount for relay in relays)

    def stop(self) -> None:
        for name in list(self.pulls):
            self.pulls.pop(name).stop()


def _nothing() -> None:
    """A configured relay has no master to re-ask when its stream ends."""
