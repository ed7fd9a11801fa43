"""The benchmark: ``python -m fanout.bench`` (see __main__.py and DESIGN.md "Tests and benchmark").

Where things are: ``payload`` (the self-identifying stream and its reference verifier),
``_swarm`` (compiled from _swarm.pyx: the epoll listener loop and the C verifier),
``swarm`` (its processes), ``feeder`` (the PUT source), ``icecast`` / ``servers`` /
``serving`` (the servers under test), ``measure`` (their CPU and RSS), ``scenarios``
(bench/scenarios.toml), ``runner`` (one run, one step, one scenario), ``report``
(figures and the table), ``progress`` (the live display).
"""
