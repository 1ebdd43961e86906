"""Peak-memory measurement of one call on the CPU (RSS sampled in a thread) or on CUDA (allocator peak).

On the CPU glibc keeps freed memory in its arenas, which would hide a later call's peak; bench scripts
therefore re-exec themselves with ``MALLOC_MMAP_THRESHOLD_`` low so large buffers are returned to the
OS when freed, and call ``malloc_trim`` before each measurement.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil
import torch

ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536"}


def reexec_with_malloc_env() -> None:
    if all(os.environ.get(k) == v for k, v in ENV.items()):
        return
    os.environ.update(ENV)
    os.execv(sys.executable, [sys.executable, *sys.argv])


def _trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def compare(ours: Callable[[], Any], theirs: Callable[[], Any], device: torch.device, repeats: int = 5) -> dict:
    """Time two implementations interleaved (A B A B …, so drifting machine load hits both alike) and
    measure each one's peak memory. Reports the fastest and the median call of each."""
    ours(), theirs()  # warm-up
    t_a, t_b = [], []
    for _ in range(repeats):
        t_a.append(_timed(ours, device))
        t_b.append(_timed(theirs, device))
    t_a.sort(), t_b.sort()
    m_a, m_b = peak_memory_mib(ours, device), peak_memory_mib(theirs, device)
    return {
        "ours_min_s": round(t_a[0], 4), "diffusers_min_s": round(t_b[0], 4),
        "ours_median_s": round(t_a[len(t_a) // 2], 4), "diffusers_median_s": round(t_b[len(t_b) // 2], 4),
        "time_ratio_min": round(t_a[0] / t_b[0], 3), "time_ratio_median": round(t_a[len(t_a) // 2] / t_b[len(t_b) // 2], 3),
        "ours_peak_mib": round(m_a, 1), "diffusers_peak_mib": round(m_b, 1),
        "memory_ratio": round(m_a / m_b, 3) if m_b > 0 else None,
    }


def measure(fn: Callable[[], Any], device: torch.device, repeats: int = 3) -> tuple[float, float]:
    """(median seconds per call after one warm-up, peak memory in MiB) of a single implementation."""
    fn()
    times = sorted(_timed(fn, device) for _ in range(repeats))
    return times[len(times) // 2], peak_memory_mib(fn, device)


def peak_memory_mib(fn: Callable[[], Any], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    proc = psutil.Process()
    _trim()
    base = peak = proc.memory_info().rss
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, proc.memory_info().rss)
            time.sleep(0.001)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        fn()
    finally:
        stop.set()
        th.join()
    return (peak - base) / 2**20
