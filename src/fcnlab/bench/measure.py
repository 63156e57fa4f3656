"""Measuring primitives for the benchmark: device, clock, peak memory, FLOPs, matmul peak, an
interleaved A/B clock and an op-level profile."""

from __future__ import annotations

import ctypes
import gc
import platform
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

MIB = 2 ** 20


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda: no CUDA device is available")
    return torch.device(name)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, n: int) -> list[float]:
    """Wall seconds of ``n`` calls of ``fn``, each synchronised on the device."""
    out = []
    for _ in range(n):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        out.append(time.perf_counter() - t)
    return out


def interleaved(a: Callable[[], object], b: Callable[[], object], device: torch.device,
                reps: int) -> tuple[list[float], list[float]]:
    """Wall seconds of ``reps`` calls each of ``a`` and ``b``, interleaved so that slow and fast
    phases of a shared machine hit both alike: the order alternates A B, B A, A B, ... (the
    pairs' mirror order also cancels a linear drift)."""
    ta, tb = [], []
    for i in range(reps):
        for fn, out in ((a, ta), (b, tb)) if i % 2 == 0 else ((b, tb), (a, ta)):
            out.extend(timed(fn, device, 1))
    return ta, tb


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return model or platform.processor() or "cpu"


# ----------------------------------------------------------------------------- host memory
_LIBC = None


def _libc():
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL("libc.so.6")
        except OSError:
            _LIBC = False
    return _LIBC


def tune_allocator() -> None:
    """glibc: serve every allocation above 128 KiB by mmap (no adaptive threshold), so freed
    tensors go back to the OS and the next measurement's resident-set peak starts clean."""
    libc = _libc()
    if libc:
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


class PeakMemory:
    """Peak memory of a region: the GPU's ``max_memory_allocated`` minus what was allocated at
    :meth:`start` on CUDA; on the CPU the
    process's peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs``) minus the
    resident set at :meth:`start`. Without ``clear_refs`` it falls back to
    ``getrusage(RUSAGE_SELF).ru_maxrss``, which only grows, so a region below an earlier peak
    reads 0 then (``method`` says which was used). tracemalloc does not see torch's allocations.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.method = "cuda.max_memory_allocated" if device.type == "cuda" else "VmHWM"
        self.base = 0

    def start(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            return
        libc = _libc()
        if libc:
            libc.malloc_trim(0)
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
            self.base = (_status_kib("VmRSS") or 0) * 1024
        except OSError:
            self.method = "ru_maxrss"
            self.base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def peak_mib(self) -> float:
        if self.device.type == "cuda":
            return max(0, torch.cuda.max_memory_allocated(self.device) - self.base) / MIB
        if self.method == "VmHWM":
            peak = (_status_kib("VmHWM") or 0) * 1024
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return max(0.0, peak - self.base) / MIB


# ----------------------------------------------------------------------------- FLOPs and peak
def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs (2 per multiply-add) of one call, by torch's FLOP counter (convs, matmuls, ...)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def matmul_peak_gflops(device: torch.device, n: int, reps: int) -> dict:
    """This machine's dense fp32 matrix-multiply rate: best of ``reps`` n×n×n products."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    c = torch.empty(n, n, device=device)
    torch.mm(a, b, out=c)  # warm-up
    best = min(timed(lambda: torch.mm(a, b, out=c), device, reps))
    return {"n": n, "reps": reps, "dtype": "float32", "best_s": best,
            "gflops": 2 * n ** 3 / best / 1e9}


# ----------------------------------------------------------------------------- profile
def profile_ops(fn: Callable[[], object], device: torch.device, steps: int = 2,
                top: int = 8) -> dict:
    """Where the time of ``fn`` goes: ``torch.profiler`` over ``steps`` calls, the ``top`` ops by
    self time (CPU time on the CPU, device time on CUDA; an op's own time, without the ops it
    calls), per call of ``fn`` and as a share of all ops' self time (which adds up to the
    profiled time of the calls, profiler overhead included). ``step_s`` is the wall time per call
    under the profiler, for scale."""
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        sync(device)
        t = time.perf_counter()
        for _ in range(steps):
            fn()
        sync(device)
        wall = time.perf_counter() - t
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    events = [e for e in prof.key_averages() if getattr(e, key, 0) > 0]
    total = sum(getattr(e, key) for e in events) or 1.0
    events.sort(key=lambda e: getattr(e, key), reverse=True)
    ops = [{"op": e.key, "self_ms": getattr(e, key) / 1e3 / steps,
            "share_pct": 100.0 * getattr(e, key) / total, "calls": e.count / steps}
           for e in events[:top]]
    return {"steps": steps, "by": "self_cuda" if cuda else "self_cpu", "step_s": wall / steps,
            "total_self_ms": total / 1e3 / steps, "top": ops}
