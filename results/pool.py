"""CPU-bound work at scale: worker processes (parsing runs, drawing charts) and bulk creation."""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import signal
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

MAX_WORKERS = 8


def workers_for(jobs: int) -> int:
    """How many worker processes `jobs` independent jobs should get: one per CPU, at most."""
    return max(1, min(os.cpu_count() or 1, MAX_WORKERS, jobs))


def can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of `workers` processes: forked where the platform offers it (they start in
    milliseconds and inherit every loaded module), else the platform's default start method.
    """
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("fork" if can_fork() else None),
        initializer=_leave_interrupts_to_parent,
    )


def _leave_interrupts_to_parent() -> None:
    # Ctrl-C reaches the whole process group; only the parent should answer it (one line, no
    # traceback from each worker)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # a forked worker holds a copy of the parent's objects (10,000 records, say): its garbage
    # collector would walk them all again and again, and copy every page it touches
    gc.freeze()


@contextlib.contextmanager
def bulk() -> Iterator[None]:
    """No garbage collection while many objects without cycles are made (records, rows).

    Each collection walks every object made since the last, and finds nothing to free: for
    10,000 records that is about a quarter of the time taken to make them.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
