"""The fastest matmul this machine runs, beside the LSTM kernel: what bounds a training step.

For each thread count and precision: the best GFLOP/s of ``torch.mm`` over a few shapes (square
ones and those of a paper-size step: the LSTMs' input projections over all 160 x 112 rows, one
recurrent step, a weight gradient), best of ``--repeats``; and a 2 x 500 ``nn.LSTM`` forward +
backward over 160 x 112 x 114 (the decoder's first BiLSTM layer's input width, K = 10 samples
of 16 sentences), counted as its matmuls. A training step made of these kernels cannot run
faster than its FLOPs at the best matmul rate; ``benchmarks.bench_train``'s GFLOP/s read
against it.

    python -m benchmarks.bench_ceiling [--threads 1,2] [--precisions fp32,bf16]

Writes benchmarks/results/ceiling.csv and prints the table.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from pathlib import Path

import torch
from torch import nn

from benchmarks import RESULTS
from benchmarks.csv_rows import write_rows
from latentflow import runtime

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# (m, k, n): square; LSTM input projection, layer 2 (160 x 112 rows, 2 x 500 inputs); one
# recurrent step (160 rows); a weight gradient (4 x 500 gates over all rows)
SHAPES = [(2048, 2048, 2048), (4096, 4096, 4096), (17920, 1000, 2000), (160, 500, 2000),
          (2000, 17920, 500)]  # fmt: skip
TINY_SHAPES = [(64, 64, 64), (32, 48, 16)]


def lstm_flops(rows: int, steps: int, inputs: int, hidden: int, layers: int) -> int:
    """Forward + backward FLOPs of a stacked LSTM over inputs that need their gradient: the
    backward is twice the forward's matmuls, less the first step's gradient into the zero
    initial state of each layer, which nothing needs."""
    total, width = 0, inputs
    for _ in range(layers):
        total += 3 * 2 * rows * steps * 4 * hidden * (width + hidden)
        total -= 2 * rows * 4 * hidden * hidden
        width = hidden
    return total


def best_seconds(fn, repeats: int, inner: int) -> float:
    fn()  # warm-up (oneDNN primitive creation, first touch of the buffers)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - start) / inner)
    return min(times)


def matmul_gflops(m: int, k: int, n: int, dtype: torch.dtype, repeats: int) -> float:
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    flops = 2 * m * k * n
    inner = max(1, int(2e10 / flops))  # ~0.1-0.3 s per repeat at these rates
    return flops / best_seconds(lambda: torch.mm(a, b), repeats, inner) / 1e9


def lstm_gflops(size: tuple[int, int, int, int, int], precision: str, repeats: int) -> float:
    rows, steps, inputs, hidden, layers = size
    lstm = nn.LSTM(inputs, hidden, layers, batch_first=True)
    x = torch.randn(rows, steps, inputs, requires_grad=True)
    autocast = (
        torch.autocast("cpu", dtype=torch.bfloat16)
        if precision == "bf16"
        else contextlib.nullcontext()
    )

    def step() -> None:
        with autocast:
            out, _ = lstm(x)
        out.float().sum().backward()

    return lstm_flops(*size) / best_seconds(step, repeats, 1) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--precisions", default="fp32,bf16", help="fp32,bf16")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per kernel")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes (smoke test only)")
    parser.add_argument("--out", type=Path, default=RESULTS / "ceiling.csv")
    args = parser.parse_args()
    precisions = [p for p in args.precisions.split(",") if p]
    try:
        threads = [int(t) for t in args.threads.split(",") if t]
    except ValueError:
        threads = []
    bad_precisions = not precisions or set(precisions) - set(DTYPES)
    if not threads or min(threads) < 1 or bad_precisions or args.repeats < 1:
        parser.error(
            "--threads takes positive integers, --precisions fp32,bf16, --repeats >= 1 "
            f"(got {args.threads!r}, {args.precisions!r}, {args.repeats})"
        )
    if "bf16" in precisions and not runtime.cpu_has_fast_bf16():
        # emulated bf16 runs at a fraction of a GFLOP/s: the square shapes would take hours
        print("bf16 skipped: this CPU has no bf16 matmul hardware (AVX512-BF16 or AMX)")
        precisions.remove("bf16")
        if not precisions:
            raise SystemExit("bench_ceiling: nothing to measure (bf16 only, and no bf16 here)")
    shapes = TINY_SHAPES if args.tiny else SHAPES
    lstm_size = (4, 3, 5, 8, 2) if args.tiny else (160, 112, 114, 500, 2)
    print(
        f"torch {torch.__version__}, load average at start {os.getloadavg()[0]:.2f} "
        f"({os.cpu_count()} CPUs), best of {args.repeats}",
        flush=True,
    )
    rows = []
    for n in threads:
        torch.set_num_threads(n)
        for precision in precisions:
            for m, k, n_ in shapes:
                rate = matmul_gflops(m, k, n_, DTYPES[precision], args.repeats)
                rows.append(dict(threads=n, precision=precision, kernel=f"mm {m}x{k}x{n_}",
                                 gflops=rate))  # fmt: skip
            rate = lstm_gflops(lstm_size, precision, max(1, args.repeats // 2))
            rows.append(dict(threads=n, precision=precision,
                             kernel="lstm {}x{}x{}, {} x {}, fwd+bwd".format(*lstm_size),
                             gflops=rate))  # fmt: skip
            print(f"  {n} thread(s) {precision} done", flush=True)
    write_rows(args.out, rows)
    header = (
        f"{'threads':>7s} {'prec':4s} {'best mm GFLOP/s':>15s} {'LSTM GFLOP/s':>12s} "
        f"{'LSTM/best':>9s}"
    )
    print("\n" + header + "\n" + "-" * len(header))
    for n in threads:
        for precision in precisions:
            mine = [r for r in rows if r["threads"] == n and r["precision"] == precision]
            best = max(r["gflops"] for r in mine if r["kernel"].startswith("mm"))
            lstm = next(r["gflops"] for r in mine if r["kernel"].startswith("lstm"))
            print(f"{n:7d} {precision:4s} {best:15.1f} {lstm:12.1f} {lstm / best:9.0%}")
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}; written: {args.out}")


if __name__ == "__main__":
    main()
