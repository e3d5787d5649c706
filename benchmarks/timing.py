"""Timing shared by the benchmarks: synchronised wall-clock seconds of calls, interleaved."""
from __future__ import annotations

import time
from collections.abc import Callable

import torch


def timings(fns: dict[str, Callable[[], object]], *, device: torch.device,
            repeat: int, warmup: int = 2) -> dict[str, list[float]]:
    """Seconds of each call of each function, the functions interleaved round by round."""
    def once(fn: Callable[[], object]) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t

    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            times[name].append(once(fn))
    return times
