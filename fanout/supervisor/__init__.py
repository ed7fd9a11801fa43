"""The supervisor process: workers, mounts, relays, redirects (start with arbiter.py).

Reading order, bottom up (each module imports only those before it): ownership (pure),
pool → mounts, gathering, slaves → dispatch → arbiter. The pure tables it uses live
beside it: `fanout.registry`, `fanout.gathers`, `fanout.redirects`.

`Supervisor`, `WorkerHandle`, the timeouts and the exit statuses are importable from here;
`WORKER_MODULE` (the module each worker runs) is read from here when the server starts
(`fanout.cli`), so a test may point it elsewhere.
"""
from fanout.startup import EXIT_CONFIG, EXIT_OK, EXIT_STARTUP
from fanout.supervisor.arbiter import Supervisor
from fanout.supervisor.gathering import GATHER_TIMEOUT
from fanout.supervisor.pool import (
    BOOT_TIMEOUT, DEFAULT_TIMEOUT, EXIT_WORKER_BOOT, STOP_GRACE, WORKER_MODULE, WorkerHandle,
)

__all__ = [
    "BOOT_TIMEOUT", "DEFAULT_TIMEOUT", "EXIT_CONFIG", "EXIT_OK", "EXIT_STARTUP",
    "EXIT_WORKER_BOOT", "GATHER_TIMEOUT", "STOP_GRACE", "WORKER_MODULE", "Supervisor",
    "WorkerHandle",
]
