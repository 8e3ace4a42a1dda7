"""Process-level settings applied by the entry points: threads and the allocator."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import warnings

import torch

log = logging.getLogger(__name__)

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_TUNED = False


def tune_malloc() -> bool:
    """Stop glibc from mmap/munmap-ing every large CPU tensor on every step.

    With glibc's defaults each allocation over the mmap threshold gets fresh pages (page faults
    on first touch) and returns them on free; on these VMs that cost about half of a long
    batch's step time (measured on a 2-core AMD EPYC VM). Disabling mmap for malloc and never
    trimming the heap keeps freed memory for reuse, which is what jemalloc gives. A no-op when
    the process does not use glibc's malloc (e.g. jemalloc was preloaded) or when
    LATENTFLOW_NO_MALLOC_TUNING is set.
    Returns True when the settings were applied.
    """
    global _TUNED
    if _TUNED:
        return True
    if os.environ.get("LATENTFLOW_NO_MALLOC_TUNING") or "jemalloc" in os.environ.get(
        "LD_PRELOAD", ""
    ):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    _TUNED = ok
    log.debug("glibc malloc tuned (no mmap, no trim): %s", ok)
    return ok


# Where Debian/Ubuntu's libjemalloc2 puts jemalloc, and the settings it is run with here: keep
# freed pages (no decay), and reuse a kept extent for a request of any smaller size
# (lg_extent_max_active_fit: jemalloc's default, 6, only splits one for requests down to 1/64 of
# it, and under no decay the extents it will not split pile up: cpu/jsb/tarflowlm grew by ~20 MB
# a step to an out-of-memory kill, flat with 30). The Makefile's ALLOC_ENV says the same.
JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
JEMALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1,lg_extent_max_active_fit:30"


def jemalloc_loaded() -> bool:
    """Whether jemalloc is mapped into this process (from /proc/self/maps)."""
    try:
        with open("/proc/self/maps") as maps:
            return "jemalloc" in maps.read()
    except OSError:
        return False


def allocator() -> str:
    """The allocator this process runs on, for the run log: "jemalloc" when it is loaded (e.g.
    ``make train`` preloads it where it is installed), else "glibc (tuned)" or "glibc"."""
    if jemalloc_loaded():
        return "jemalloc"
    return "glibc (tuned)" if _TUNED else "glibc"


def process_start_time() -> float | None:
    """This process's start as a Unix time (Linux ``/proc``), or None where it is not known."""
    try:
        stat = open("/proc/self/stat").read()
        boot = next(
            float(line.split()[1]) for line in open("/proc/stat") if line.startswith("btime ")
        )
        ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, starttime
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def apply_runtime(threads: int | None = None, malloc: bool = True) -> None:
    """Set the intra-op thread count (when given), tune the allocator (when asked) and silence
    one known, harmless warning (Lightning 2.6 on torch 2.13: LeafSpec deprecation)."""
    warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
    if threads is not None:
        if threads < 1:
            raise ValueError(f"runtime.threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    if malloc:
        tune_malloc()


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU runs bf16 matmuls in hardware (oneDNN's AVX512-BF16 or AMX kernels).
    Without them bf16 is emulated: measured 0.3 GFLOP/s against 104 in fp32 (AMD EPYC Zen 3,
    AVX2 only, 2 threads)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@functools.cache
def cpu_has_bf16_lstm() -> bool:
    """Whether oneDNN runs a whole-sequence LSTM in bf16 on this CPU. Measured: yes with AMX
    (Intel Xeon), on AMD Zen 5 and on an AMD EPYC family 25 model 17 (Zen 4), all AVX512-BF16
    (there a 2 x 500 LSTM's forward + backward ran 1.6x faster than fp32); no on the AMD EPYC
    of 2026-12-02 (also AVX512-BF16: "could not create a primitive descriptor", the LSTMs would
    stay fp32 and they are 80-89% of a training step). The flags do not tell these apart, so it
    is probed, once per process, on a 1 x 2 x 4 LSTM."""
    if not cpu_has_fast_bf16():
        return False
    lstm = torch.nn.LSTM(4, 4, batch_first=True)
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            out, _ = lstm(torch.zeros(1, 2, 4))
    except RuntimeError:
        return False
    return out.dtype == torch.bfloat16


def resolve_precision(precision: object, on_cpu: bool) -> object:
    """``trainer.precision=auto``: bf16-mixed where bf16 runs the whole step in hardware (a CPU
    with a bf16 LSTM in oneDNN: AMX, AMD Zen 5; a CUDA GPU with bf16), 32-true elsewhere; the
    choice and its reason go to the run log. Any other value is returned unchanged.

    Quality: JSB CPU recipes, 3 seeds each, bf16-mixed against fp32 on the same CPU (README
    "Mixed precision")."""
    if str(precision) != "auto":
        return precision
    if on_cpu:
        fast = cpu_has_bf16_lstm()
        why = (
            "this CPU runs bf16 matmuls and LSTMs in hardware (oneDNN bf16 LSTM probed)"
            if fast
            else "this CPU has no bf16 LSTM in oneDNN (probed): bf16 would not be faster"
        )
    else:
        fast = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        why = "this GPU supports bf16" if fast else "this GPU has no bf16"
    chosen = "bf16-mixed" if fast else "32-true"
    log.info("trainer.precision=auto -> %s: %s", chosen, why)
    return chosen


def warn_slow_bf16_on_cpu(precision: object, on_cpu: bool) -> bool:
    """One warning when ``trainer.precision`` asks for bf16 on a CPU that emulates it."""
    if not (on_cpu and "bf16" in str(precision)) or cpu_has_fast_bf16():
        return False
    log.warning(
        "trainer.precision=%s on a CPU without bf16 matmul hardware (no AVX512-BF16 or AMX): "
        "bf16 is emulated here and many times slower than fp32; trainer.precision=32 is faster",
        precision,
    )
    return True
