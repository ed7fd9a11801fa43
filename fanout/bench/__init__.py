"""The benchmark: ``python -m fanout.bench`` (see __main__.py and DESIGN.md "Tests and benchmark").

Where things are: ``payload`` (the self-identifying stream and its reference verifier),
``_swarm`` (compiled from _swarm.pyx: the epoll listener loop and the C verifier),
``swarm`` (its processes), ``feeder`` (the PUT sources, one thread for all),
``icecast`` / ``servers`` / ``serving`` (the servers under test), ``measure`` (their
CPU and memory), ``scenarios`` (bench/scenarios.toml), ``runner`` (one run, one step,
one scenario), ``relay`` (a master and the server under test as its slave), ``soak``
(churn, metadata, killed workers, memory slopes), ``sessions`` (which server runs
which scenario), ``report`` (figures and the table), ``progress`` (the live display).
"""
