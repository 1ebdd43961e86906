"""Timing and peak-memory measurement of one call on the CPU (RSS sampled in a thread) or on CUDA
(allocator peak).

On the CPU glibc keeps freed memory in its arenas, which would hide a later call's peak, so memory is
measured in a separate process (phase "memory") run with ``MALLOC_MMAP_THRESHOLD_`` low, which returns
large buffers to the OS when freed. That setting makes every large allocation a fresh mmap and so slows
both implementations, so timings come from a process with the normal allocator (phase "time").
``OPENWAN_BENCH_PHASE`` selects the phase; unset, both are measured in this process.
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


PHASE = os.environ.get("OPENWAN_BENCH_PHASE", "both")  # "time" | "memory" | "both"


def run_phases(argv: list[str], out_json: str) -> dict:
    """Run this benchmark twice in child processes, timings with the normal allocator and memory with
    the low mmap threshold, and merge their JSON results."""
    import json
    import subprocess
    import tempfile

    results = []
    for phase, extra_env in (("time", {}), ("memory", ENV)):
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
            path = f.name
        env = {**os.environ, **extra_env, "OPENWAN_BENCH_PHASE": phase}
        subprocess.run([sys.executable, *argv, "--out", path], env=env, check=True)
        with open(path) as f:
            results.append(json.load(f))
        os.unlink(path)
    return _merge(*results)


def run_in_phases_if_needed(device: str, out) -> dict | None:
    """On the CPU with no phase chosen, run this script once per phase in child processes and return the
    merged result (with the command); otherwise None: the caller measures in this process."""
    if device != "cpu" or PHASE != "both":
        return None
    result = run_phases([os.path.abspath(sys.argv[0]), *sys.argv[1:]], str(out))
    result["command"] = "python " + " ".join(sys.argv)
    return result


def machine_info(device, threads: int) -> dict:
    """The header every result file starts with: device, threads and command, and under "environment" what
    ``openwan.environment`` records (library versions, the openwan commit, the CPU), so that a result names
    the code it measured."""
    from openwan.environment import environment_info

    env = environment_info()
    return {"device": str(device), "threads": threads, "torch": torch.__version__, "cpu": env["cpu"],
            "command": "python " + " ".join(sys.argv), "environment": env}


def _merge(a, b):
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: _merge(a[k], b[k]) if k in a and k in b else a.get(k, b.get(k)) for k in {**a, **b}}
    if isinstance(a, list) and isinstance(b, list):
        return [_merge(x, y) for x, y in zip(a, b)]
    return a


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
    row: dict = {}
    if PHASE in ("time", "both"):
        t_a, t_b = [], []
        for _ in range(repeats):
            t_a.append(_timed(ours, device))
            t_b.append(_timed(theirs, device))
        t_a.sort(), t_b.sort()
        mid = len(t_a) // 2
        row.update({
            "ours_min_s": round(t_a[0], 4), "diffusers_min_s": round(t_b[0], 4),
            "ours_median_s": round(t_a[mid], 4), "diffusers_median_s": round(t_b[mid], 4),
            "time_ratio_min": round(t_a[0] / t_b[0], 3), "time_ratio_median": round(t_a[mid] / t_b[mid], 3),
        })
    if PHASE in ("memory", "both"):
        m_a, m_b = peak_memory_mib(ours, device), peak_memory_mib(theirs, device)
        row.update({"ours_peak_mib": round(m_a, 1), "diffusers_peak_mib": round(m_b, 1),
                    "memory_ratio": round(m_a / m_b, 3) if m_b > 0 else None})
    return row


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


def cpu_rows_main(doc: str, default_name: str, sections: list[tuple[str, Callable[[int], list[dict]]]]) -> None:
    """Command line of a CPU benchmark made of row sections: --threads, --repeats, --out (default
    results/<default_name>); writes the machine info and every section's rows as JSON."""
    import argparse
    import json
    from pathlib import Path

    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=8)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / default_name))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    result = {**machine_info(torch.device("cpu"), args.threads), "rows": []}
    for title, rows in sections:
        print(f"{title} ...", flush=True)
        result["rows"] += rows(args.repeats)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
