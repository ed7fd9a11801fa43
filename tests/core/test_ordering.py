"""What the ring's memory ordering rests on: one publication primitive with its fence, and
a build that refuses a CPU or byte order nobody reasoned about (_core/atomics.h)."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ATOMICS = ROOT / "_core" / "atomics.h"
CC = shutil.which("cc") or shutil.which("gcc")
needs_cc = pytest.mark.skipif(CC is None, reason="no C compiler (the core could not be built)")


def compile_atomics(*flags: str) -> subprocess.CompletedProcess[str]:
    """Compile atomics.h alone, as the core's build does, with predefined macros changed."""
    assert CC is not None
    return subprocess.run([CC, "-fsyntax-only", *flags, "-x", "c", "-include", str(ATOMICS),
                           "/dev/null"], capture_output=True, text=True)


@needs_cc
def test_atomics_build_on_this_machine():
    result = compile_atomics()
    assert result.returncode == 0, result.stderr


@needs_cc
def test_atomics_refuse_a_big_endian_cpu():
    result = compile_atomics("-U__BYTE_ORDER__", "-D__BYTE_ORDER__=__ORDER_BIG_ENDIAN__")
    assert result.returncode != 0
    assert "fanout's ring layout is little-endian: this CPU is not" in result.stderr


@needs_cc
def test_atomics_refuse_a_cpu_whose_memory_model_was_not_reasoned_about():
    result = compile_atomics("-U__x86_64__", "-U__aarch64__", "-D__powerpc64__=1")
    assert result.returncode != 0
    assert "reasoned for x86-64 and aarch64 only" in result.stderr


@needs_cc
def test_atomics_accept_aarch64(tmp_path):
    # Only the guard is under test: a stand-in stdint.h, as this host's headers are x86's.
    (tmp_path / "stdint.h").write_text(
        "typedef unsigned int uint32_t;\ntypedef unsigned long uint64_t;\n")
    result = compile_atomics("-U__x86_64__", "-D__aarch64__=1", "-nostdinc",
                             "-isystem", str(tmp_path))
    assert result.returncode == 0, result.stderr


def test_every_compiled_write_seq_publication_is_ring_publish():
    """The fence after a publication lives in ring_publish (_core/_core.pxd); any other
    store of write_seq would skip it."""
    stores = []
    for path in sorted((ROOT / "_core").glob("*.p[yx][xd]")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"fo_store\w*\(u64_at\([^)]*OFF_WRITE_SEQ", line):
                stores.append((path.name, number))
    pxd = (ROOT / "_core" / "_core.pxd").read_text().splitlines()
    assert len(stores) == 1 and stores[0][0] == "_core.pxd"
    enclosing = next(line for line in reversed(pxd[:stores[0][1]]) if line.startswith("cdef"))
    assert "ring_publish(" in enclosing
    assert "fo_fence_release()" in "\n".join(pxd[stores[0][1]:stores[0][1] + 2])


def test_every_twin_write_seq_publication_is_publish():
    source = (ROOT / "fanout" / "coreref.py").read_text()
    assert source.count("self._u64[_U64_WRITE_SEQ] = ") == 1
    publish = source[source.index("    def _publish("):]
    assert publish.index("self._u64[_U64_WRITE_SEQ] = ") < publish.index("\n    def ")


def test_twin_refuses_a_cpu_without_total_store_order():
    result = subprocess.run(
        [sys.executable, "-c",
         "import platform; platform.machine = lambda: 'ppc64le'; import fanout.coreref"],
        cwd=ROOT, capture_output=True, text=True)
    assert result.returncode != 0
    assert "ImportError: fanout.coreref: without fences this twin is correct on x86-64 only" \
        in result.stderr
