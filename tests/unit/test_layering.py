"""Layers point one way, across every module of fanout/.

The checker reads each module's imports with `ast` (function-level and TYPE_CHECKING ones
too: they tie modules together as much as any), resolves relative imports and
`from package import module`, and then asserts three things:

1. No cycle between any two modules (reported as the cycle, module by module).
2. Every import points down LAYERS: a module may import its own layer or lower ones,
   never a higher one; within one layer, only its own group (same prefix).
3. The pure layers (rank < FIRST_IO_RANK: protocol, model, config and the pure tables
   and messages) do no IO, read no clock and draw no random number: they import none of
   IO_MODULES (a listed exception says why), call no `open`, and read no clock function
   even where `time` is allowed for conversions. `now` and `rng` are passed in.

The last tests run the same checker on a synthetic package in tmp_path: a wrong-way
import, a cycle through a function-level import, and an IO import in a pure layer each fail.
"""
from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# fanout's layers, lowest first: (group prefixes, ...). A module belongs to the group with
# the longest matching prefix.
LAYERS: list[tuple[str, ...]] = [
    ("fanout",),  # the package itself: its version only
    ("fanout.protocol", "fanout.lifecycle", "fanout.relay.plan", "fanout.supervisor.ownership",
     "fanout.gathers"),  # sans-IO parsers, renderers, tables
    ("fanout.model",),  # Ogg pages, MP3 frames, ingest model (on protocol)
    ("fanout.config", "fanout.mountinfo", "fanout.redirects"),  # redirects: the slave table
    ("fanout.messages",),  # what crosses the control channel
    # -- IO from here up --------------------------------------------------------------------
    ("fanout.core", "fanout.coreref", "fanout.ingestref", "fanout._core", "fanout._ingest",
     "fanout.supervised", "fanout.logs", "fanout.sdnotify", "fanout.tls", "fanout.hooks",
     "fanout.source_files", "fanout.address_files"),
    ("fanout.counters", "fanout.control", "fanout.ringio", "fanout.registry",
     "fanout.httpclient", "fanout.startup"),
    ("fanout.relay", "fanout.worker", "fanout.privileges"),
    ("fanout.supervisor",),
    ("fanout.cli", "fanout.bench"),
    ("fanout.__main__",),
]
FIRST_IO_RANK = 5

# What a pure layer may not import: IO, processes, clocks, randomness, the event loop.
IO_MODULES = frozenset({
    "socket", "select", "selectors", "ssl", "subprocess", "threading", "multiprocessing",
    "asyncio", "signal", "random", "secrets", "mmap", "fcntl", "resource", "ctypes", "shutil",
    "tempfile", "os", "time", "datetime", "urllib.request", "http.client", "importlib",
    "gevent", "greenlet", "psutil", "logging",
})
# Listed exceptions, each with its reason.
PURE_EXCEPTIONS = {
    # Converts the epoch seconds it is given (the checks below forbid reading the clock).
    "fanout.protocol.dates": {"time"},
    # choose(targets, now, rng) draws from the global random only when no rng is passed.
    "fanout.redirects": {"random"},
}
# Functions of `time` / `datetime` that read the clock or sleep (forbidden in pure layers
# even where `time` itself is allowed); and those that read it when given no time.
CLOCK_CALLS = frozenset({"time", "time_ns", "monotonic", "monotonic_ns", "perf_counter",
                         "perf_counter_ns", "process_time", "sleep", "clock_gettime",
                         "now", "today", "utcnow"})
CLOCK_WITHOUT_ARGUMENT = {"localtime": 1, "gmtime": 1, "ctime": 1, "asctime": 1, "strftime": 2}


@dataclass(frozen=True)
class Source:
    name: str  # dotted module name
    path: Path
    is_package: bool  # an __init__.py


def sources(root: Path, package: str) -> dict[str, Source]:
    """Every module of `package` (a folder under `root`), by dotted name."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        found[name] = Source(name, path, is_package)
    return found


def resolve(source: Source, node: ast.ImportFrom) -> str:
    """The absolute module a `from … import` names (relative ones resolved)."""
    if node.level == 0:
        return node.module or ""
    package = source.name if source.is_package else source.name.rpartition(".")[0]
    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
    return f"{base}.{node.module}" if node.module else base


def imports_of(source: Source, known: set[str]) -> set[str]:
    """Every module `source` imports, anywhere in it; `from X import m` is module X.m when
    that is a module of `known`."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source.path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = resolve(source, node)
            for alias in node.names:
                names.add(f"{module}.{alias.name}" if f"{module}.{alias.name}" in known
                          else module)
    return names


def import_graph(root: Path, package: str) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(edges between `package`'s modules, every import of each module)."""
    modules = sources(root, package)
    known = set(modules)
    everything = {name: imports_of(src, known) for name, src in modules.items()}
    inside = {name: {target for target in imports if target in known and target != name}
              for name, imports in everything.items()}
    return inside, everything


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles (strongly connected components of two or more modules), each as
    a path that comes back to its start (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(cycle_path(graph, set(component)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def cycle_path(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """One loop through `component`, from its first module back to it."""
    start = min(component)
    path, node, seen = [start], start, {start}
    while True:
        following = sorted(t for t in graph[node] if t in component)
        back = start if start in following else next((t for t in following if t not in seen),
                                                       following[0])
        path.append(back)
        if back == start or back in seen:
            return path
        seen.add(back)
        node = back


def group_of(module: str, layers: list[tuple[str, ...]]) -> tuple[int, str]:
    """(rank, group prefix) of `module`: the longest prefix of LAYERS it falls under."""
    matches = [(len(prefix), rank, prefix) for rank, prefixes in enumerate(layers)
               for prefix in prefixes if module == prefix or module.startswith(prefix + ".")]
    if not matches:
        raise LookupError(f"{module} is in no layer: add it to LAYERS")
    _, rank, prefix = max(matches)
    return rank, prefix


def wrong_way(graph: dict[str, set[str]], layers: list[tuple[str, ...]]) -> list[str]:
    """Every import of a higher layer, or of another group of the same layer."""
    offenders = []
    for module, targets in sorted(graph.items()):
        rank, group = group_of(module, layers)
        for target in sorted(targets):
            target_rank, target_group = group_of(target, layers)
            if target_rank > rank or (target_rank == rank and target_group != group):
                offenders.append(f"{module} -> {target}")
    return offenders


def impurities(root: Path, package: str, layers: list[tuple[str, ...]], first_io: int,
               exceptions: dict[str, set[str]]) -> list[str]:
    """What the pure layers' modules import or call that does IO, reads a clock or draws
    randomness."""
    _, everything = import_graph(root, package)
    offenders = []
    for name, src in sources(root, package).items():
        if group_of(name, layers)[0] >= first_io:
            continue
        allowed = exceptions.get(name, set())
        for module in sorted(everything[name]):
            top = module.split(".")[0]
            if (module in IO_MODULES or top in IO_MODULES) and not {module, top} & allowed:
                offenders.append(f"{name} imports {module}")
        offenders += [f"{name} {what}" for what in clock_and_file_calls(src.path)]
    return offenders


def clock_and_file_calls(path: Path) -> list[str]:
    calls = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id == "open":
            calls.append("calls open()")
        elif isinstance(func, ast.Attribute) and func.attr in CLOCK_CALLS:
            calls.append(f"calls {ast.unparse(func)}() (a clock)")
        elif (isinstance(func, ast.Attribute) and func.attr in CLOCK_WITHOUT_ARGUMENT
              and len(node.args) < CLOCK_WITHOUT_ARGUMENT[func.attr]):
            calls.append(f"calls {ast.unparse(func)} without a time (reads the clock)")
    return calls


# ---- fanout itself -------------------------------------------------------------------------

def test_no_module_of_fanout_is_in_an_import_cycle():
    graph, _ = import_graph(ROOT, "fanout")
    assert cycles(graph) == []


def test_every_import_points_down_the_layers():
    graph, _ = import_graph(ROOT, "fanout")
    assert wrong_way(graph, LAYERS) == []


def test_pure_layers_do_no_io_read_no_clock_and_draw_no_randomness():
    assert impurities(ROOT, "fanout", LAYERS, FIRST_IO_RANK, PURE_EXCEPTIONS) == []


def test_pure_layers_use_only_the_standard_library_and_xmltodict():
    _, everything = import_graph(ROOT, "fanout")
    foreign = [f"{name} imports {module}" for name, imports in sorted(everything.items())
               if group_of(name, LAYERS)[0] < FIRST_IO_RANK
               for module in sorted(imports)
               if module.split(".")[0] not in {*sys.stdlib_module_names, "fanout", "xmltodict"}]
    assert foreign == []


def test_the_checker_sees_every_module_of_fanout():
    modules = sources(ROOT, "fanout")
    assert {"fanout.worker.main", "fanout.supervisor.arbiter", "fanout.protocol.http",
            "fanout.cli", "fanout"} <= set(modules)
    assert len(modules) == len(list((ROOT / "fanout").rglob("*.py")))
    for name in modules:
        group_of(name, LAYERS)  # raises for a module no layer names


# ---- the checker, on a synthetic package ---------------------------------------------------

SYNTHETIC_LAYERS: list[tuple[str, ...]] = [("syn",), ("syn.pure",), ("syn.app",)]


def write(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.fixture
def synthetic(tmp_path: Path) -> Path:
    write(tmp_path, {
        "syn/__init__.py": "",
        "syn/pure/__init__.py": "",
        "syn/pure/parse.py": "import re\n\ndef parse(now):\n    return now\n",
        "syn/app/__init__.py": "",
        "syn/app/serve.py": "from syn.pure.parse import parse\nfrom . import handlers\n",
        "syn/app/handlers.py": "from ..pure import parse\n",
    })
    return tmp_path


def test_a_clean_synthetic_package_passes(synthetic):
    graph, _ = import_graph(synthetic, "syn")
    assert graph["syn.app.serve"] == {"syn.pure.parse", "syn.app.handlers"}
    assert graph["syn.app.handlers"] == {"syn.pure.parse"}  # relative, resolved
    assert cycles(graph) == [] and wrong_way(graph, SYNTHETIC_LAYERS) == []
    assert impurities(synthetic, "syn", SYNTHETIC_LAYERS, 2, {}) == []


def test_a_wrong_way_import_fails(synthetic):
    write(synthetic, {"syn/pure/parse.py": "from ..app import serve\n"})
    graph, _ = import_graph(synthetic, "syn")
    assert wrong_way(graph, SYNTHETIC_LAYERS) == ["syn.pure.parse -> syn.app.serve"]


def test_a_cycle_through_a_function_level_import_fails(synthetic):
    write(synthetic, {"syn/app/handlers.py": "def late():\n    from syn.app import serve\n"})
    graph, _ = import_graph(synthetic, "syn")
    assert cycles(graph) == [["syn.app.handlers", "syn.app.serve", "syn.app.handlers"]]


def test_io_a_clock_or_randomness_in_a_pure_layer_fails(synthetic):
    write(synthetic, {"syn/pure/parse.py": (
        "import random\nfrom time import monotonic\nimport time\n\n"
        "def parse():\n    open('x')\n    return time.time(), time.localtime()\n")})
    assert impurities(synthetic, "syn", SYNTHETIC_LAYERS, 2, {}) == [
        "syn.pure.parse imports random", "syn.pure.parse imports time",
        "syn.pure.parse calls open()", "syn.pure.parse calls time.time() (a clock)",
        "syn.pure.parse calls time.localtime without a time (reads the clock)"]
    assert impurities(synthetic, "syn", SYNTHETIC_LAYERS, 2,
                      {"syn.pure.parse": {"random", "time"}})[0] == "syn.pure.parse calls open()"
