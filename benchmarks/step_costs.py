"""What a step costs beyond its time: its FLOPs as PyTorch counts them, a floor at the rates
this machine reaches at its shapes, where its time goes (torch.profiler), and the machine's
dense matmul rate. Shared by ``benchmarks.bench_train`` and ``benchmarks.bench_sample``."""

from __future__ import annotations

import math
import statistics
import time

import torch

GEMMS = ("mm", "addmm", "bmm", "baddbmm")


def count_flops(step, device: torch.device) -> tuple[int, dict]:
    """FLOPs of one step as PyTorch counts them (``FlopCounterMode``, forward and backward,
    the LSTMs decomposed into their matmuls by ``native_rnn``: the same arithmetic), and the
    same step as it runs: the time of its LSTM kernels (oneDNN) and the shape and FLOPs of
    every other matmul: ``{"lstm_s": seconds, "gemms": {(batch, m, k, n): flops}}``."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode

    from latentflow.models.recurrent import native_rnn

    counter = FlopCounterMode(display=False)
    with native_rnn(), counter:
        step()
    found: dict = {"lstm_s": 0.0, "gemms": {}}

    class AsItRuns(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.__name__.split(".")[0]
            if "rnn" in name or "lstm" in name:
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                start = time.perf_counter()
                out = func(*args, **(kwargs or {}))
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                found["lstm_s"] += time.perf_counter() - start
                return out
            if name in GEMMS:
                a, b = (args[1], args[2]) if name in ("addmm", "baddbmm") else (args[0], args[1])
                batch = a.shape[0] if a.dim() == 3 else 1
                key = (batch, a.shape[-2], a.shape[-1], b.shape[-1])
                found["gemms"][key] = found["gemms"].get(key, 0) + 2 * math.prod(key)
            return func(*args, **(kwargs or {}))

    with AsItRuns():
        step()
    return int(counter.get_total_flops()), found


def shape_floor(found: dict, device: torch.device, bf16: bool, cover: float = 0.95) -> float:
    """A floor for the step at the rates this machine reaches *at its shapes*, measured now
    (between rows, not once per run): the time of its LSTM kernels as they ran, plus its other
    matmuls at the rate measured at their own shapes (those holding ``cover`` of their FLOPs
    timed; the rest at the slowest rate seen)."""
    shapes = found["gemms"]
    total = sum(shapes.values())
    dtype = torch.bfloat16 if bf16 else torch.float32
    seconds, done, slowest = found["lstm_s"], 0, None
    for (batch, m, k, n), flops in sorted(shapes.items(), key=lambda kv: -kv[1]):
        if done >= cover * total:
            break
        a = torch.randn(batch, m, k, device=device, dtype=dtype)
        b = torch.randn(batch, k, n, device=device, dtype=dtype)
        reps = max(3, min(200, int(2e9 / max(1, 2 * batch * m * k * n))))
        torch.bmm(a, b)
        start = time.perf_counter()
        for _ in range(reps):
            torch.bmm(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        rate = 2 * batch * m * k * n * reps / (time.perf_counter() - start)  # FLOP/s
        slowest = rate if slowest is None else min(slowest, rate)
        seconds += flops / rate
        done += flops
    if total > done and slowest:
        seconds += (total - done) / slowest
    return seconds


def profile_step(step, device: torch.device) -> dict[str, float]:
    """Where one step's time goes (torch.profiler, self CPU time): the LSTM kernels, matmuls,
    the prior's serial loop (inclusive), elementwise and other ops, allocation, and what no op
    accounts for (Python and dispatch)."""
    from torch.profiler import ProfilerActivity, profile

    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    wall = time.perf_counter() - start
    parts = {"lstm": 0.0, "matmul": 0.0, "elementwise": 0.0, "allocation": 0.0}
    serial = 0.0
    for event in prof.key_averages():
        name, t = event.key.lower(), event.self_cpu_time_total / 1e6
        if name == "latentflow.serial_loop":
            serial += event.cpu_time_total / 1e6
            continue
        if "lstm" in name or "rnn" in name:
            parts["lstm"] += t
        elif any(g in name for g in ("::mm", "addmm", "bmm", "matmul", "::linear")):
            parts["matmul"] += t
        elif any(a in name for a in ("empty", "resize", "::zeros", "::ones")):
            parts["allocation"] += t
        else:
            parts["elementwise"] += t
    parts["python_and_dispatch"] = max(0.0, wall - sum(parts.values()))
    parts["serial_loop_inclusive"] = serial
    parts["profiled_wall"] = wall
    return parts


def matmul_rate(
    threads: int, n: int = 2048, repeats: int = 5, device: str = "cpu", precision: str = "fp32"
) -> float:
    """Dense matmul GFLOP/s on ``threads`` threads or a GPU (median of ``repeats``), in fp32 or
    under bf16 autocast (what the rows of that precision run)."""
    torch.set_num_threads(threads)
    if device != "cpu":
        n, repeats = 8192, 20
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    if precision == "bf16":
        a, b = a.bfloat16(), b.bfloat16()
    elif device != "cpu":
        torch.backends.cuda.matmul.allow_tf32 = False  # the floor of true fp32
    a @ b
    times = []
    for _ in range(repeats):
        if device != "cpu":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device != "cpu":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


def median_seconds(fn, repeats: int, warmup: int = 1) -> float:
    """Median wall-clock seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
