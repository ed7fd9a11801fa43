"""Build the compiled core. `pip install .` compiles it or fails loudly: there is no silent
pure-Python fallback in production (the reference twin is opt-in, see fanout/core.py)."""
import sys

from setuptools import Extension, setup

try:
    from Cython.Build import cythonize
except ImportError:  # pragma: no cover - build-time guard
    sys.exit("fanout: Cython is required to build the compiled core (pip install Cython)")

EXTENSIONS = [
    Extension("fanout._core", ["_core/_core.pyx"], include_dirs=["_core"],
              extra_compile_args=["-O2"]),
    # The bench's load generator (listener swarm, verifier): not part of the server, so it
    # lives with the bench, away from the production core in _core/.
    Extension("fanout.bench._swarm", ["fanout/bench/_swarm.pyx"], extra_compile_args=["-O2"]),
]

setup(
    ext_modules=cythonize(
        EXTENSIONS,
        compiler_directives={"language_level": "3", "boundscheck": False,
                             "wraparound": False, "cdivision": True},
    ),
)
