"""The one thread policy: how many threads every fit and predict may use.

Why: on a shared machine, OpenMP threads (HistGradientBoosting, BLAS) that outnumber the
free cores spin in barriers while they wait for each other, and a fit can take several
times longer than with one thread. So the default is the cores that are free now (the
cores minus the rounded 1-minute load, at least 1), and every fit and predict runs inside
`limit()`. The CLI's `--threads` (or `EPHYS2TX_THREADS`) sets it for a whole run.

Parallel folds run as threads in this process (never worker processes that could outlive
it), each inside `limit(1)`: an OpenMP limit holds only for the thread that sets it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import Ephys2txError

THREADS_ENV = "EPHYS2TX_THREADS"
# Read by OpenMP and the BLAS libraries when they load (and inherited by child processes).
LIBRARY_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_chosen: int | None = None
_local = threading.local()  # the limit of the innermost `limit()` block of each thread


def free_cores() -> int:
    """The cores not busy now: the core count minus the rounded 1-minute load, at least 1."""
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average (Windows): use every core
        load = 0.0
    return max(1, min(cores, cores - round(load)))


def check_threads(value: int | None) -> int | None:
    """A positive thread count, or None (the free cores)."""
    if value is not None and value < 1:
        raise Ephys2txError(f"--threads {value}: give a positive number of threads")
    return value


def set_threads(value: int | None) -> int:
    """Set the policy for this process and the processes it starts (None: the free cores
    now); returns the count. Also exported as the OpenMP/BLAS variables, which hold for
    libraries loaded later and for every thread (`limit` covers those already loaded)."""
    global _chosen
    _chosen = check_threads(value) or free_cores()
    for name in LIBRARY_ENV:
        os.environ[name] = str(_chosen)
    return _chosen


def env_threads() -> int | None:
    """`EPHYS2TX_THREADS` as a count, or None when unset."""
    env = os.environ.get(THREADS_ENV, "").strip()
    if not env:
        return None
    try:
        value = int(env)
    except ValueError:
        value = 0
    if value < 1:
        raise Ephys2txError(f"{THREADS_ENV}={env!r}: give a positive number of threads")
    return value


def threads() -> int:
    """The thread count fits and predictions use now: `--threads`, else `EPHYS2TX_THREADS`,
    else the free cores."""
    if _chosen is not None:
        return _chosen
    return env_threads() or free_cores()


@contextmanager
def limit(n: int | None = None) -> Iterator[int]:
    """Run the block with at most `n` threads (None: the policy) in OpenMP, BLAS, torch and
    joblib calls that leave n_jobs unset; yields the count. Nested blocks may only lower it."""
    from joblib import parallel_config
    from threadpoolctl import threadpool_limits

    n = threads() if n is None else max(1, n)
    outer = getattr(_local, "n", None)
    n = n if outer is None else min(n, outer)
    _local.n = n
    torch = _loaded_torch()
    before = torch.get_num_threads() if torch is not None else None
    # joblib's n_jobs=None (e.g. the forests' tree building) takes the same count
    with threadpool_limits(limits=n), parallel_config(n_jobs=n):
        if torch is not None:
            torch.set_num_threads(min(n, before))
        try:
            yield n
        finally:
            _local.n = outer
            if torch is not None:
                torch.set_num_threads(before)


def _loaded_torch():
    """torch if something imported it already (the policy never imports torch itself)."""
    import sys

    return sys.modules.get("torch")


@contextmanager
def predicting(n: int | None = None) -> Iterator[int]:
    """`limit(n)` for predictions, with joblib's loops run one after another.

    Why: a forest sums its trees' votes in the order parallel threads finish, so the same
    cell gets probabilities that differ in the last bits from run to run, and an exact tie
    (common with few trees) then breaks either way. Predicting is cheap; the same input
    must give the same output."""
    from joblib import parallel_config

    with limit(n) as count, parallel_config(backend="sequential"):
        yield count
