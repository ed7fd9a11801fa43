"""``python -m fanout.bench``: run scenarios against fanout and Icecast, print one table.

Examples::

    python -m fanout.bench                                  # realtime, both servers
    python -m fanout.bench --scenario all --json bench/results/today.json
    python -m fanout.bench --scenario realtime -n 50 --duration 5 --servers icecast
    python -m fanout.bench --scenario mounts --mounts 10 -n 5 --duration 10
    python -m fanout.bench --target http://127.0.0.1:8000/live --source-password hackme

Servers are started one after the other on loopback with a generated icecast.xml; a
server that cannot start is reported and the other still runs. ``--target`` runs the
load against an already running Icecast-compatible server instead (loopback only).
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import os
import platform
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fanout.bench.scenarios import DEFAULT_FILE, Scenario, ScenarioError

EXIT_NOTHING_RAN = 1
EXIT_USAGE = 2


def scenario_list(path: Path = DEFAULT_FILE) -> str:
    """Return the scenarios of ``path`` with their one-line descriptions (for --help)."""
    from fanout.bench.scenarios import load_scenarios  # noqa: PLC0415

    try:
        known = load_scenarios(path)
    except (OSError, ScenarioError) as exc:
        return f"scenarios: {path} cannot be read: {exc}"
    width = max(len(name) for name in known)
    lines = [f"  {name.ljust(width)}  {s.description}" for name, s in known.items()]
    return f"scenarios ({path.name}):\n" + "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m fanout.bench", description=__doc__.split("\n")[0],
                                epilog=scenario_list(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", action="append", default=None,
                   help="scenario name(s), comma-separated or repeated, or 'all' "
                        "(every scenario but the soak) [realtime]")
    p.add_argument("--servers", default=None,
                   help="servers to start, comma-separated: fanout,icecast "
                        "[the scenario's own: both, the soak fanout only]")
    p.add_argument("--target", help="run against this running server, e.g. http://127.0.0.1:8000/live")
    p.add_argument("--source-password", help="source password of --target")
    p.add_argument("--server-pid", type=int, help="pid of --target (default: whoever listens on its port)")
    p.add_argument("-n", "--listeners", help="listener count(s) per mount, comma-separated (one step each)")
    p.add_argument("--mounts", type=int, help="mounts (one source each)")
    p.add_argument("--duration", type=float, help="seconds per run")
    p.add_argument("--rate", type=float, help="listener arrival rate per second (0 = all at once)")
    p.add_argument("--runs", type=int, help="runs per step; the median is reported [3]")
    p.add_argument("--icy", action=argparse.BooleanOptionalAction, default=None,
                   help="listeners ask for ICY metadata (default: per scenario)")
    p.add_argument("--workers", type=int, help="fanout workers [one per core]")
    p.add_argument("--swarm-procs", type=int, default=0, help="swarm processes [automatic]")
    p.add_argument("--scenarios-file", type=Path, default=DEFAULT_FILE)
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="no progress display")
    p.add_argument("--tls", action="store_true",
                   help="listeners connect over TLS (both servers get an <ssl> port and a "
                        "self-signed certificate; sources stay plain)")
    return p.parse_args(argv)


def missing_prerequisites() -> list[str]:
    """Return what is missing to run the bench at all (empty when ready)."""
    problems = []
    try:
        from fanout.bench import _swarm  # noqa: F401, PLC0415
    except ImportError:
        problems.append("the compiled swarm fanout.bench._swarm is not built: "
                        "run `python setup.py build_ext --inplace` (needs Cython and gcc)")
    try:
        import psutil  # noqa: F401, PLC0415
    except ImportError:
        problems.append("psutil is missing: pip install psutil")
    return problems


def select_scenarios(args: argparse.Namespace) -> list[Scenario]:
    """Return the scenarios asked for, with the command-line overrides applied."""
    from fanout.bench.scenarios import load_scenarios, with_overrides  # noqa: PLC0415

    known = load_scenarios(args.scenarios_file)
    names = [n for arg in (args.scenario or ["realtime"]) for n in arg.split(",") if n]
    if "all" in names:  # the soak is half an hour of faults: only when named
        names = [n for n, s in known.items() if s.kind != "soak"]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ScenarioError(f"unknown scenario(s) {unknown}; known: {', '.join(known)}")
    listeners = [int(n) for n in args.listeners.split(",")] if args.listeners else None
    return [with_overrides(known[n], listeners=listeners, duration=args.duration,
                           arrival_rate=args.rate, runs=args.runs, icy=args.icy,
                           mounts=args.mounts) for n in names]


def target_endpoint(args: argparse.Namespace) -> Any:
    """Return the Endpoint of --target; raise ValueError unless it is a loopback http URL."""
    from fanout.bench.measure import listening_pid  # noqa: PLC0415
    from fanout.bench.runner import Endpoint  # noqa: PLC0415

    url = urlsplit(args.target)
    host = "127.0.0.1" if url.hostname == "localhost" else (url.hostname or "")
    if url.scheme != "http" or not url.port or not url.path.startswith("/"):
        raise ValueError("--target must look like http://127.0.0.1:PORT/mount")
    if ipaddress.ip_address(host) not in ipaddress.ip_network("127.0.0.0/8"):
        raise ValueError("--target must be on loopback (127.0.0.0/8): the bench sends load nowhere else")
    if not args.source_password:
        raise ValueError("--target needs --source-password")
    return Endpoint("target", host, url.port, url.path, args.source_password,
                    pid=args.server_pid or listening_pid(url.port, host), fresh_mounts=False,
                    swarm_processes=args.swarm_procs)


def run_on_endpoint(endpoint: Any, scenarios: list[Scenario], display: Any) -> dict[str, list[Any]]:
    """Run ``server`` scenarios against a running server; raise ScenarioError for others."""
    from fanout.bench.runner import run_scenario  # noqa: PLC0415

    others = [s.name for s in scenarios if s.kind != "server"]
    if others:
        raise ScenarioError(f"{', '.join(others)}: the bench must start the servers of these "
                            "(relay: a master and its slave; soak: workers to kill), not --target")
    return {s.name: run_scenario(endpoint, s, display) for s in scenarios}


def default_servers() -> list[str]:
    from fanout.bench.scenarios import SERVER_KINDS  # noqa: PLC0415

    return list(SERVER_KINDS)


def sections(scenarios: list[Scenario], results: dict[str, dict[str, list[Any]]],
             start_errors: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    """Return the table sections: one per step, each server's median or error."""
    out = []
    for scenario in scenarios:
        for step in scenario.steps:
            title = f"{step.name}  ({scenario.description}; {step.duration:g} s, median of {step.runs})"
            by_server: dict[str, Any] = {kind: f"not started: {err}" for kind, err in start_errors.items()}
            for label, per_scenario in results.items():
                found = [r for r in per_scenario.get(scenario.name, []) if r.step == step]
                by_server[label] = (found[0].error or found[0].median) if found else None
            out.append((title, by_server))
    return out


def error_lines(results: dict[str, dict[str, list[Any]]], start_errors: dict[str, str]) -> list[str]:
    """Return one line per server that did not start and per step that could not run."""
    lines = [f"{kind}: not started: {err.splitlines()[0]}" for kind, err in start_errors.items()]
    lines += [f"{label} {r.step.name}: {r.error}" for label, per_scenario in results.items()
              for step_results in per_scenario.values() for r in step_results if r.error]
    return lines


def results_json(args: argparse.Namespace, scenarios: list[Scenario],
                 results: dict[str, dict[str, list[Any]]], start_errors: dict[str, str]) -> dict[str, Any]:
    steps = []
    for scenario in scenarios:
        for step in scenario.steps:
            per_server = {}
            for label, per_scenario in results.items():
                for r in per_scenario.get(scenario.name, []):
                    if r.step == step:
                        per_server[label] = {"median": r.median, "runs": r.runs, "error": r.error}
            steps.append({"scenario": scenario.name, "step": step.name, "params": asdict(step),
                          "servers": per_server})
    return {
        "command": sys.argv, "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "server_start_errors": start_errors, "steps": steps,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    problems = missing_prerequisites()
    if problems:
        print("fanout.bench: cannot run:\n  " + "\n  ".join(problems), file=sys.stderr)
        return EXIT_USAGE
    from fanout.bench.progress import make_display  # noqa: PLC0415
    from fanout.bench.report import render_table  # noqa: PLC0415

    display = make_display(not args.no_progress)
    try:
        scenarios = select_scenarios(args)
        if args.target:
            results = {"target": run_on_endpoint(target_endpoint(args), scenarios, display)}
            start_errors: dict[str, str] = {}
        else:
            from fanout.bench.sessions import run_on_servers  # noqa: PLC0415

            kinds = args.servers.split(",") if args.servers else None
            unknown = sorted(set(kinds or ()) - set(default_servers()))
            if unknown:
                raise ValueError(f"unknown server(s) {unknown}; known: {', '.join(default_servers())}")
            results, start_errors = run_on_servers(kinds, scenarios, display, args.workers,
                                                   args.swarm_procs, args.tls)
    except (ScenarioError, ValueError) as exc:
        print(f"fanout.bench: {exc}", file=sys.stderr)
        return EXIT_USAGE
    labels = [*results, *(k for k in start_errors if k not in results)]
    print(render_table(sections(scenarios, results, start_errors), labels))
    for line in error_lines(results, start_errors):
        print(line)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results_json(args, scenarios, results, start_errors), indent=1))
    return 0 if results else EXIT_NOTHING_RAN


if __name__ == "__main__":
    sys.exit(main())
