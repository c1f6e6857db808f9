"""Helpers shared by the benchmarks: machine ceilings, memory, child processes, the JSON result line.

Every benchmark prints what it measured as it goes and ends with one JSON object on the last line
(:func:`print_json_line`), so scripts can collect results with ``tail -n 1``.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch


def best_time(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> float:
    """Fastest of ``repeats`` timed calls of ``fn`` (seconds), after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def matmul_peak_flops(dtype: torch.dtype = torch.bfloat16, sizes: Sequence[int] = (1024, 2048)) -> float:
    """Best measured matmul throughput (FLOP/s) of square ``dtype`` GEMMs on this machine's threads.

    The ceiling of a compute-bound step: what ``torch.matmul`` reaches on large, well-shaped operands.
    """
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        seconds = best_time(lambda a=a, b=b: torch.matmul(a, b), repeats=5, warmup=2)
        best = max(best, 2 * n**3 / seconds)
    return best


def memory_bandwidth(megabytes: int = 256) -> float:
    """Measured read bandwidth (bytes/s): a sum over a buffer much larger than the caches.

    The ceiling of a memory-bound step, where each weight is read once per step.
    """
    x = torch.ones(megabytes * 2**20 // 4, dtype=torch.float32)
    seconds = best_time(lambda: x.sum(), repeats=5, warmup=1)
    return x.numel() * 4 / seconds


def peak_rss_bytes() -> int:
    """Peak resident memory of this process, in bytes.

    Linux: ``VmHWM`` of /proc/self/status, which starts afresh at exec. (``ru_maxrss`` does not: a child
    started from a big parent reports the parent's peak.) Elsewhere: ``ru_maxrss``.
    """
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: macOS bytes, Linux KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def run_child(args: Sequence[str], timeout: float = 900.0) -> dict:
    """Run ``python <args>`` in a fresh process (its own peak RSS); return the JSON object of its last line."""
    proc = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=dict(os.environ)
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> dict:
    """What the numbers were measured on: CPU model, threads, torch version, load average at start."""
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu
            )
    except OSError:
        pass
    return {
        "cpu": cpu,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def print_json_line(result: dict) -> None:
    """Print ``result`` as one compact JSON line (floats rounded to 4 significant digits)."""

    def tidy(value: Any) -> Any:
        if isinstance(value, float):
            return float(f"{value:.4g}")
        if isinstance(value, dict):
            return {k: tidy(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [tidy(v) for v in value]
        return value

    print(json.dumps(tidy(result), separators=(",", ":")), flush=True)
