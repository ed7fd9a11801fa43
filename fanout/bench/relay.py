"""Relay scenarios: an Icecast 2.4.4 master fed by the bench, the server under test as its slave.

Theory of operation. ``run_relay_scenario`` starts the master once (always Icecast
2.4.4, so every slave mirrors the same thing), then for each server kind:

1. start the slave, whose icecast.xml names the master (``<master-server>`` etc., with
   the step's ``poll_interval`` as ``<master-update-interval>``);
2. read the slave's memory while it relays nothing (the base of "memory per mount");
3. feed ``mounts`` paced sources into the master; the slave finds them at its next
   poll and pulls each one;
4. wait until the slave serves every mount (or until ``relay_timeout``: the figure
   ``mounts_served`` then says how many it does), and run each step's runs against
   the slave: listeners spread over its mounts, CPU and memory of its process tree;
5. stop the feeder and the slave, so the next kind starts from an empty master.

The master's own CPU is not measured: it is the same server for both slaves.
"""

from __future__ import annotations

from typing import Any

from fanout.bench.feeder import Feeder, SourceRefused
from fanout.bench.icecast import MasterLink, new_config
from fanout.bench.measure import ServerMonitor
from fanout.bench.progress import Display
from fanout.bench.runner import (
    Endpoint, StepResult, failed_steps, measure, mounts_serving, repeat_step, run_steps,
    source_specs,
)
from fanout.bench.scenarios import Scenario, Step
from fanout.bench.servers import start_server
from fanout.bench.serving import ServerProcess, ServerStartError

MOUNT_PREFIX = "/relay"
# s for a slave to pick up and serve every mount: a poll interval, then the pulls
# (Icecast starts relays one after the other) — more for more mounts.
RELAY_TIMEOUT_BASE = 30.0
RELAY_TIMEOUT_PER_MOUNT = 0.05


def relay_timeout(step: Step) -> float:
    return step.poll_interval + RELAY_TIMEOUT_BASE + RELAY_TIMEOUT_PER_MOUNT * step.mounts


def run_relay_scenario(kinds: list[str], scenario: Scenario, display: Display,
                       workers: int | None = None, swarm_processes: int = 0,
                       master: ServerProcess | None = None) -> dict[str, list[StepResult]]:
    """Run ``scenario`` with each server kind as the slave; return the results by kind.

    ``master``: a running Icecast 2.4.4 to use (it must have no mounts), else one is
    started and stopped here."""
    if master is not None:
        return {kind: _run_on_slave(kind, master, scenario, display, workers, swarm_processes)
                for kind in kinds}
    display.note(f"{scenario.name}: starting the Icecast 2.4.4 master ...")
    try:
        master = start_server("icecast")
    except ServerStartError as exc:
        error = f"the Icecast master could not be started: {exc}"
        display.note(f"{scenario.name}: {error}")
        return {kind: failed_steps(scenario, error) for kind in kinds}
    try:
        return run_relay_scenario(kinds, scenario, display, workers, swarm_processes, master)
    finally:
        master.stop()


def _run_on_slave(kind: str, master: ServerProcess, scenario: Scenario, display: Display,
                  workers: int | None, swarm_processes: int) -> list[StepResult]:
    step = scenario.steps[0]  # the steps differ in listeners only
    link = MasterLink(master.host, master.port, master.admin_password,
                      update_interval=max(1, round(step.poll_interval)))
    try:
        slave = start_server(kind, workers=workers, config=new_config(master=link))
    except ServerStartError as exc:
        display.note(f"{scenario.name}: the {kind} slave could not be started: {exc}")
        return failed_steps(scenario, f"the slave could not be started: {exc}")
    display.note(f"{scenario.name}: {kind} slave on {slave.host}:{slave.port} (pid {slave.pid}), "
                 f"mirroring {step.mounts} mounts")
    try:
        return _relay_and_measure(kind, master, slave, scenario, display, swarm_processes)
    finally:
        slave.stop()


def _relay_and_measure(kind: str, master: ServerProcess, slave: ServerProcess,
                       scenario: Scenario, display: Display,
                       swarm_processes: int) -> list[StepResult]:
    step = scenario.steps[0]
    monitor = ServerMonitor(slave.pid)
    pss_before = monitor.pss()
    master_end = Endpoint("master", master.host, master.port, MOUNT_PREFIX,
                          master.source_password, fresh_mounts=False)
    mounts = master_end.next_mounts(step.mounts)
    feeder = Feeder(source_specs(master_end, step, mounts), write_frames=step.source_write_frames)
    try:
        feeder.start()
    except (SourceRefused, OSError) as exc:
        return failed_steps(scenario, f"the master refused a source: {exc}")
    try:
        served = mounts_serving(slave.host, slave.port, mounts, relay_timeout(step))
        display.note(f"{scenario.name}: the {kind} slave serves {len(served)}/{len(mounts)} mounts")
        slave_end = Endpoint(kind, slave.host, slave.port, MOUNT_PREFIX, slave.source_password,
                             pid=slave.pid, swarm_processes=swarm_processes)

        def once(s: Step, label: str) -> dict[str, Any]:
            # Listeners go to every mount, relayed or not: one that is not counts as failed.
            now_served = mounts_serving(slave.host, slave.port, mounts, timeout=0)
            return measure(slave_end, mounts, s, display, label, feeder, monitor,
                           pss_before=pss_before, mounts_served=len(now_served))

        return run_steps(scenario, lambda s: repeat_step(s, kind, display, once))
    finally:
        stats = feeder.stop()
        if stats.error:
            display.note(f"{scenario.name}: a source of the master ended early: {stats.error}")
