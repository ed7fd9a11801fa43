"""Which server runs which scenario, and in which order.

``run_on_servers``: the ``server`` scenarios run on one server per kind, started once
for all of them (fanout, then Icecast); each ``relay`` scenario starts its own Icecast
master and a fresh slave per kind (``relay.py``); each ``soak`` a fresh server per
kind (``soak.py``). A scenario runs on the kinds asked for with ``--servers``, else on
its own ``servers`` (the soak: fanout only, as Icecast has no workers to kill).
"""

from __future__ import annotations

import os

from fanout.bench.progress import Display
from fanout.bench.relay import run_relay_scenario
from fanout.bench.runner import Endpoint, StepResult, run_scenario
from fanout.bench.scenarios import SERVER_KINDS, Scenario
from fanout.bench.icecast import new_config
from fanout.bench.servers import start_server
from fanout.bench.serving import ServerStartError, free_port
from fanout.bench.tlsproxy import TlsProxies
from fanout.bench.soak import run_soak

Results = dict[str, dict[str, list[StepResult]]]  # server kind -> scenario -> step results


def kinds_for(scenario: Scenario, asked: list[str] | None) -> list[str]:
    """Return the server kinds ``scenario`` runs on, in the bench's order."""
    wanted = set(asked) if asked is not None else set(scenario.servers)
    return [kind for kind in SERVER_KINDS if kind in wanted]


def run_on_servers(asked: list[str] | None, scenarios: list[Scenario], display: Display,
                   workers: int | None = None, swarm_processes: int = 0, tls: bool = False,
                   ) -> tuple[Results, dict[str, str]]:
    """Run every scenario on its servers; return the results and the servers that could
    not be started (kind -> why). With `tls`, the `server` scenarios' listeners connect
    over TLS (through `tlsproxy.TlsProxies`); sources stay plain."""
    results: Results = {}
    start_errors: dict[str, str] = {}
    for kind in SERVER_KINDS:
        plain = [s for s in scenarios if s.kind == "server" and kind in kinds_for(s, asked)]
        if plain:
            _run_plain(kind, plain, display, workers, swarm_processes, results, start_errors, tls)
    for scenario in scenarios:
        kinds = kinds_for(scenario, asked)
        if scenario.kind == "relay":
            by_kind = run_relay_scenario(kinds, scenario, display, workers, swarm_processes)
        elif scenario.kind == "soak":
            by_kind = {kind: run_soak(kind, scenario, display, workers, swarm_processes)
                       for kind in kinds}
        else:
            continue
        for kind, steps in by_kind.items():
            results.setdefault(kind, {})[scenario.name] = steps
    return results, start_errors


def _run_plain(kind: str, scenarios: list[Scenario], display: Display, workers: int | None,
               swarm_processes: int, results: Results, start_errors: dict[str, str],
               tls: bool = False) -> None:
    display.note(f"starting {kind}{' with TLS' if tls else ''} ...")
    config = new_config(tls=tls)
    try:
        server = start_server(kind, workers=workers, config=config)
    except ServerStartError as exc:
        start_errors[kind] = str(exc)
        display.note(f"{kind}: could not be started, carrying on without it:\n  "
                     + str(exc).replace("\n", "\n  "))
        return
    display.note(f"{kind} serving on {server.host}:{server.port} (pid {server.pid})")
    proxies = None
    try:
        if tls:
            proxies = TlsProxies(server.host, config.tls_port, free_port(server.host),
                                 os.cpu_count() or 1)
            display.note(f"{kind}: listeners over TLS (port {config.tls_port}) through "
                         f"{len(proxies.children)} TLS proxies")
        endpoint = Endpoint(kind, server.host, server.port, "/bench", server.source_password,
                            pid=server.pid, swarm_processes=swarm_processes,
                            listen_port=proxies.port if proxies else None)
        mine = results.setdefault(kind, {})
        for scenario in scenarios:
            mine[scenario.name] = run_scenario(endpoint, scenario, display)
    finally:
        if proxies is not None:
            proxies.stop()
        server.stop()
