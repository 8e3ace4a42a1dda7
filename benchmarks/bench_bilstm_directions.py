"""Batch-1 decoder BiLSTM: one fused call against its two directions run one per thread.

The sampling decoder is a 2-layer bidirectional LSTM (paper size: 2 x 500, input latent 50 +
length 32) run once over the whole sequence at batch 1. Its directions are independent within a
layer, so they could run at once, one per core. This times, for each T and caller thread count:
the fused `nn.LSTM` call, the two directions one after the other, and the two directions at once
(the reverse one on a worker thread at 1 thread, or at the default count). Each method runs in a
fresh process: a worker thread's OpenMP team keeps spinning after its call and slows every later
call in the same process (measured: the fused call 0.067 s -> 0.10 s at T = 200). Median of
repeats. Writes benchmarks/results/bilstm_directions.csv. Run it on an idle machine.

    python -m benchmarks.bench_bilstm_directions [--lengths 100,200] [--hidden 500] [--repeats 7]
"""

from __future__ import annotations

import argparse
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import nn

from benchmarks import RESULTS, module_command, module_environment
from benchmarks.csv_rows import write_rows
from benchmarks.step_costs import median_seconds

CSV = RESULTS / "bilstm_directions.csv"
WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def one_direction(lstm: nn.LSTM, h: torch.Tensor, layer: int, reverse: bool) -> torch.Tensor:
    """One direction of one layer: [1, T, in] -> [1, T, H]."""
    suffix = "_reverse" if reverse else ""
    weights = [getattr(lstm, f"{name}_l{layer}{suffix}") for name in WEIGHTS]
    zeros = h.new_zeros(1, 1, lstm.hidden_size)
    xs = h.flip(1) if reverse else h
    out = torch.lstm(xs, (zeros, zeros), weights, True, 1, 0.0, False, False, True)[0]
    return out.flip(1) if reverse else out


def serial(lstm: nn.LSTM, h: torch.Tensor) -> torch.Tensor:
    for layer in range(lstm.num_layers):
        h = torch.cat(
            [one_direction(lstm, h, layer, False), one_direction(lstm, h, layer, True)], -1
        )
    return h


def concurrent(lstm: nn.LSTM, h: torch.Tensor, pool: ThreadPoolExecutor) -> torch.Tensor:
    for layer in range(lstm.num_layers):
        backward = pool.submit(_no_grad(one_direction), lstm, h, layer, True)
        forward = one_direction(lstm, h, layer, False)
        h = torch.cat([forward, backward.result()], -1)
    return h


def _no_grad(fn: Callable) -> Callable:
    # grad mode is per thread: the worker must turn it off itself
    def wrapped(*args):
        with torch.no_grad():
            return fn(*args)

    return wrapped


METHODS = (
    "fused",
    "serial directions",
    "concurrent, worker 1 thread",
    "concurrent, worker default",
)


def measure(
    method: str, threads: int, lengths: list[int], hidden: int, inputs: int, repeats: int
) -> None:
    """In this (fresh) process: time one method at each T, print `T seconds` lines."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    lstm = nn.LSTM(inputs, hidden, num_layers=2, bidirectional=True, batch_first=True).eval()
    workers = 1 if method == "concurrent, worker 1 thread" else threads
    pool = ThreadPoolExecutor(1, initializer=torch.set_num_threads, initargs=(workers,))
    fn = {
        "fused": lambda x: lstm(x)[0],
        "serial directions": lambda x: serial(lstm, x),
        "concurrent, worker 1 thread": lambda x: concurrent(lstm, x, pool),
        "concurrent, worker default": lambda x: concurrent(lstm, x, pool),
    }[method]
    with torch.no_grad():
        x = torch.randn(1, max(lengths), inputs)
        error = (fn(x) - lstm(x)[0]).abs().max().item()
        if error > 1e-4:  # every variant computes the fused call's output
            raise SystemExit(f"{method} differs from the fused call by {error:.2e}")
        for T in lengths:
            xt = x[:, :T].contiguous()
            print(T, median_seconds(lambda xt=xt: fn(xt), repeats), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="100,200", help="comma-separated T")
    parser.add_argument("--hidden", type=int, default=500)
    parser.add_argument("--input", type=int, default=82, help="latent 50 + length embedding 32")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--method", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    lengths = [int(t) for t in args.lengths.split(",")]
    if args.method:
        measure(args.method, args.threads, lengths, args.hidden, args.input, args.repeats)
        return

    cpu = torch.backends.cpu.get_cpu_capability()
    print(
        f"BiLSTM 2 x {args.hidden}, batch 1, input {args.input}; CPU capability {cpu};"
        " a process per method"
    )
    rows = []
    for threads in (2, 1):
        for method in METHODS:
            command = module_command(
                "bench_bilstm_directions", "--method", method, "--threads", str(threads)
            )
            command += [
                "--lengths",
                args.lengths,
                "--hidden",
                str(args.hidden),
                "--input",
                str(args.input),
            ]
            command += ["--repeats", str(args.repeats)]
            result = subprocess.run(
                command, capture_output=True, text=True, env=module_environment()
            )
            if result.returncode != 0:
                raise SystemExit(f"{method}: {result.stderr.strip().splitlines()[-1]}")
            for line in result.stdout.split("\n"):
                if line.strip():
                    T, seconds = line.split()
                    rows.append(
                        {
                            "T": int(T),
                            "caller_threads": threads,
                            "method": method,
                            "seconds": float(seconds),
                        }
                    )
                    print(
                        f"T={int(T):4d}  caller {threads} thread(s)  {method:28s}"
                        f" {float(seconds):.4f} s"
                    )
    write_rows(CSV, rows)
    print(f"wrote {CSV}")


if __name__ == "__main__":
    main()
