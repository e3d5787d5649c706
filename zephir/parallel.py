"""The one process pool: map a function over jobs with a tqdm bar, results in job order."""
from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core; cv2's own threads would oversubscribe


def pmap(fn: Callable[..., T], jobs: Sequence[tuple], *, workers: int = 1, desc: str = "",
         progress: bool = True) -> list[T]:
    """``[fn(*job) for job in jobs]`` on ``workers`` processes (in-process when 1)."""
    bar = tqdm(total=len(jobs), desc=desc, unit="img", disable=not progress)
    results: list[T] = []
    try:
        if workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                results.append(fn(*job))
                bar.update()
        else:
            # spawn, not fork: a forked child of a process whose cv2/OpenMP thread pool is
            # already running can deadlock.
            with ProcessPoolExecutor(max_workers=min(workers, len(jobs)),
                                     mp_context=multiprocessing.get_context("spawn"),
                                     initializer=_init_worker) as pool:
                for res in pool.map(fn, *zip(*jobs)):
                    results.append(res)
                    bar.update()
    finally:
        bar.close()
    return results
