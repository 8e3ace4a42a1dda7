"""Training-step and IS-evaluation speed of every prior against the LSTM baseline.

Each row runs in a fresh subprocess (clean allocator state, its own peak memory); the parent
measures the machine's dense matmul rate in the same run, so every row also reads as a fraction
of its compute floor (analytic FLOPs, ``benchmarks.flops``, over that rate), and every row is
compared with the LSTM baseline row of the same size and batch measured in the same run.
The models are the recipes' (``latentflow.recipes``: the rows every dataset has, and the
variants beyond the paper).

    python -m benchmarks.bench_train            # paper sizes + CPU size, allocator comparison
    python -m benchmarks.bench_train --quick    # CPU size only, < 3 minutes
    python -m benchmarks.bench_train --device cuda --sizes paper --precisions fp32,bf16
    python -m benchmarks.bench_train --compile  # flow stacks through torch.compile

On a GPU the floor is the dense matmul rate of the row's precision (fp32 or bf16 autocast),
measured in the same run; allocator rows are CPU-only.

Batches are real PTB training sentences of fixed composition (16 of the median length 112, 16
of lengths 104-119 as a length-bucketed training batch has them, and 16 of length 250) when
the data root has them, else random tokens of those lengths.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from dataclasses import asdict
from pathlib import Path

import torch

from benchmarks import RESULTS, module_command, module_environment
from benchmarks.csv_rows import write_rows
from benchmarks.flops import Sizes
from benchmarks.step_costs import matmul_rate
from benchmarks.train_rows import MODELS, run_row
from latentflow import recipes, runtime

JEMALLOC = runtime.JEMALLOC
# what `make train` runs on: jemalloc where it is installed, else glibc with our tuning
MAKE_TRAIN_ALLOCATOR = "jemalloc" if Path(JEMALLOC).exists() else "glibc-tuned"
# a row's allocator -> what runtime.allocator() says in a process running on it
RUNTIME_NAME = {"glibc": "glibc", "glibc-tuned": "glibc (tuned)", "jemalloc": "jemalloc"}
ALLOCATORS = tuple(RUNTIME_NAME)
# Beyond the paper: a recipe prior with other parts; FLOPs from FlopCounterMode.
VARIANTS = tuple(v.name for v in recipes.VARIANTS)
SIZES = {
    "paper": Sizes(),
    "cpu": Sizes(embed=128, hidden=128, latent=16, pos=16, flow_hidden=64),
}
ELBO_SAMPLES = {"paper": 10, "cpu": 3}


# ---------------------------------------------------------------------------- parent
def row_environment(threads: int, allocator: str) -> dict[str, str]:
    """The environment of a row's process: its thread count, jemalloc preloaded for a jemalloc
    row and for no other (bench_versions runs other checkouts' rows with it too)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    env.pop("LD_PRELOAD", None)
    if allocator == "jemalloc":
        env["LD_PRELOAD"] = JEMALLOC
        env["MALLOC_CONF"] = runtime.JEMALLOC_CONF
    return env


def spawn(spec: dict) -> dict:
    env = module_environment(row_environment(spec["threads"], spec["allocator"]))
    proc = subprocess.run(
        module_command("bench_train", "--row", json.dumps(spec)),
        capture_output=True,
        text=True,
        env=env,
        timeout=3600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"row {spec} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def train_row(size: str, batch_name: str, length: int, model: str, steps: int, alloc: str):
    """A training-step row: 16 sentences of ``length`` (``batch_name``), ``model``."""
    return dict(mode="train", size=size, batch_name=batch_name, length=length, batch=16,
                model=model, samples=ELBO_SAMPLES[size], steps=steps, warmup=1,
                allocator=alloc)  # fmt: skip


def eval_row(size: str, model: str, steps: int, alloc: str) -> dict:
    """An IS-evaluation row (S = 50 for a flow) of the median batch."""
    return dict(mode="eval", size=size, batch_name="median", length=112, batch=16, model=model,
                samples=50 if model != recipes.LSTM else 1, chunk=10, steps=max(1, steps - 1),
                warmup=1, allocator=alloc)  # fmt: skip


def size_rows(args, size: str, batches: list[tuple[str, int]], models: list[str]) -> list[dict]:
    """The rows of one size: every model on every batch, its evaluation rows, and the long
    AF/AF batch on every other allocator (a CPU comparison)."""
    gpu = args.device != "cpu"
    main_alloc = main_allocator(args)
    steps = args.steps or (3 if size == "cpu" else 2) * (10 if gpu else 1)
    rows = [train_row(size, b, n, m, steps, main_alloc) for b, n in batches for m in models]
    rows += [eval_row(size, m, steps, main_alloc) for m in (() if args.no_eval else models)]
    if (not args.quick or args.allocators) and not gpu and ("long", 250) in batches:
        allocators = ["glibc", "glibc-tuned"] + (["jemalloc"] if Path(JEMALLOC).exists() else [])
        others = [a for a in allocators if a != main_alloc]  # the main one: measured above
        rows += [train_row(size, "long", 250, "af_af", steps, a) for a in others]
    return rows


def plan(args) -> list[dict]:
    """Every row of a run, in order: per size, then once more per precision beyond fp32."""
    sizes = args.sizes or (["cpu"] if args.quick else ["paper", "cpu"])
    batches = [
        b
        for b in [("median", 112), ("mixed", 112), ("long", 250)]
        if b[0] in (args.batches or "median,mixed,long")
    ]
    models = ["lstm"] + [m for m in args.models or MODELS if m != "lstm"]  # the ratios' base
    rows = [row for size in sizes for row in size_rows(args, size, batches, models)]
    for r in rows:
        r.update(threads=args.threads, root=args.root, sizes=asdict(SIZES[r["size"]]))
        r.update(device=args.device, precision="fp32", compile=args.compile)
    # every row once per precision (the allocator rows: fp32 only)
    main_alloc = main_allocator(args)
    extra = [p for p in args.precisions if p != "fp32"]
    rows += [{**r, "precision": p} for p in extra for r in rows if r["allocator"] == main_alloc]
    if "fp32" not in args.precisions:
        rows = [r for r in rows if r["precision"] != "fp32"]
    return rows


def main_allocator(args) -> str:
    """The allocator of every row but the allocator comparison's: ``--allocator``, by default
    what ``make train`` uses (jemalloc where it is installed)."""
    chosen = getattr(args, "allocator", None) or "auto"
    if args.device != "cpu":
        return "glibc-tuned"
    if chosen == "auto":
        return MAKE_TRAIN_ALLOCATOR
    if chosen == "jemalloc" and not Path(JEMALLOC).exists():
        raise SystemExit(f"--allocator jemalloc: {JEMALLOC} is not installed")
    return chosen


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CPU size only (< 3 minutes)")
    parser.add_argument("--allocators", action="store_true", help="allocator rows in --quick")
    parser.add_argument(
        "--allocator",
        choices=["auto", *ALLOCATORS],
        default="auto",
        help="allocator of the main rows (auto: what `make train` uses, jemalloc if installed)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per row")
    parser.add_argument("--root", default=None, help="data root (default: LATENTFLOW_DATA)")
    parser.add_argument("--sizes", type=lambda v: v.split(","), help="paper,cpu (default both)")
    parser.add_argument("--batches", default=None, help="median,mixed,long (default all three)")
    parser.add_argument("--no-eval", action="store_true", help="skip the IS-evaluation rows")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--precisions",
        type=lambda v: v.split(","),
        default=["fp32"],
        help="fp32,bf16 (bf16 = bf16 autocast, as trainer.precision=bf16-mixed)",
    )
    parser.add_argument(
        "--models", type=lambda v: v.split(","), help="af_af,af_scf,iaf_scf (LSTM always)"
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the flow stacks")
    parser.add_argument("--row", help=argparse.SUPPRESS)
    return parser


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    bad = set(args.precisions) - {"fp32", "bf16"}
    bad |= set(args.models or ()) - set(MODELS) - set(VARIANTS)
    if bad or args.device not in ("cpu", "cuda"):
        parser.error(
            f"--precisions takes fp32,bf16, --models {','.join([*MODELS[1:], *VARIANTS])}, "
            "--device cpu|cuda "
            f"(got {sorted(bad) or args.device})"
        )
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device visible to PyTorch")


ROW_KEYS = ("mode", "size", "batch_name", "length", "model", "samples", "allocator", "threads",
            "device", "precision", "compile")  # fmt: skip
PROFILE_KEYS = ("mode", "size", "batch_name", "model", "allocator", "precision")


def result_row(spec: dict, out: dict, rate: float) -> tuple[dict, dict]:
    """A row of the CSV from a row's spec and what its process measured (``rate``: the big
    matmul GFLOP/s of its precision), and the row of the profile CSV."""
    profile = out.pop("profile")
    row = {**{k: spec[k] for k in ROW_KEYS}, **out}
    row["chars_per_s"] = out["tokens"] / out["seconds"]
    row["gflops"] = out["flops"] / out["seconds"] / 1e9
    row["flops_ratio"] = out["flops_measured"] / out["flops"]  # measured / analytic
    # floor: this step's own matmuls at the rates measured at their shapes, in this row
    row["floor_fraction"] = out["floor_s"] / out["seconds"]
    row["big_matmul_floor_fraction"] = out["flops"] / (rate * 1e9) / out["seconds"]
    row["matmul_gflops"] = rate
    return row, {**{k: row[k] for k in PROFILE_KEYS}, **profile}


def run_rows(args, rates: dict[str, float]) -> tuple[list[dict], list[dict]]:
    """Every planned row in its own process: the CSV's rows and the profile's."""
    results, profiles = [], []
    for spec in plan(args):
        out = spawn(spec)
        loaded = out.pop("allocator_loaded")
        if spec["device"] == "cpu" and loaded != RUNTIME_NAME[spec["allocator"]]:
            raise SystemExit(f"row {spec['model']} asked for {spec['allocator']}, ran on {loaded}")
        row, profile = result_row(spec, out, rates[spec["precision"]])
        results.append(row)
        profiles.append(profile)
        print(
            f"  {row['mode']:5s} {row['size']:5s} {row['batch_name']:6s} {row['model']:8s} "
            f"{row['allocator']:11s} {row['precision']:4s} {row['seconds']:8.3f} s",
            flush=True,
        )
    return results, profiles


def add_vs_lstm(results: list[dict], main_alloc: str) -> None:
    """Every row against the LSTM row of the same run, size, batch, mode and precision on the
    main allocator (NaN where that batch ran only for the allocator rows)."""
    same = ("mode", "size", "batch_name", "precision")
    for row in results:
        base = next(
            (
                r
                for r in results
                if r["model"] == "lstm"
                and r["allocator"] == main_alloc
                and all(r[k] == row[k] for k in same)
            ),
            None,
        )
        row["vs_lstm"] = row["seconds"] / base["seconds"] if base else float("nan")


def print_table(results: list[dict]) -> None:
    header = (
        f"{'mode':5s} {'size':5s} {'batch':6s} {'model':8s} {'allocator':11s} {'prec':4s} "
        f"{'s/step':>8s} {'chars/s':>9s} {'GFLOP/s':>8s} {'meas/an':>7s} {'floor':>6s} "
        f"{'vs LSTM':>8s} {'peak MB':>8s}"
    )
    print("\n" + header + "\n" + "-" * len(header))
    for r in results:
        print(
            f"{r['mode']:5s} {r['size']:5s} {r['batch_name']:6s} {r['model']:8s} "
            f"{r['allocator']:11s} {r['precision']:4s} {r['seconds']:8.3f} "
            f"{r['chars_per_s']:9.0f} {r['gflops']:8.1f} {r['flops_ratio']:7.2f} "
            f"{r['floor_fraction']:6.0%} "
            f"{r['vs_lstm']:7.1f}x {r['peak_gpu_mb'] or r['peak_rss_mb']:8.0f}"
        )


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    if args.row:
        print(json.dumps(run_row(json.loads(args.row))))
        return
    check_args(parser, args)
    rates = {
        p: matmul_rate(args.threads, device=args.device, precision=p) for p in args.precisions
    }
    where = args.device if args.device != "cpu" else f"{args.threads} threads"
    for p, rate in rates.items():
        print(f"dense {p} matmul: {rate:.1f} GFLOP/s on {where}")
    main_alloc = main_allocator(args)
    print(f"allocator of the main rows: {main_alloc}")
    results, profiles = run_rows(args, rates)
    add_vs_lstm(results, main_alloc)
    name = "train_quick.csv" if args.quick else "train.csv"
    if args.device != "cpu":
        name = name.replace("train", f"train_{args.device}")
    write_rows(RESULTS / name, results)
    profile_name = name.replace(".csv", "_profile.csv")
    write_rows(RESULTS / profile_name, profiles)
    print_table(results)
    print(
        f"\nwritten: {RESULTS / name} and {profile_name} ({where}; allocator per row; "
        "meas/an = FLOPs counted by FlopCounterMode / analytic (benchmarks.flops); floor = "
        "the step's own matmuls at the rate measured at their shapes in that row; "
        "big-matmul rate "
        + ", ".join(f"{r:.0f} GFLOP/s ({p})" for p, r in rates.items())
        + "; peak MB: GPU memory on a GPU, else RSS)"
    )


if __name__ == "__main__":
    main()
