"""Training step of this checkout against another one (e.g. an older commit), side by side.

Rows of ``benchmarks.bench_train`` (paper sizes, PTB batches 16 x 112 and/or 16 x 250, 2
threads), each in a fresh process through each checkout's own ``bench_train --row``, the two
checkouts alternating (ABBA...) so that the machine's drift falls on both. Each checkout runs its
rows the way its own ``bench_train`` plans them: its allocator (this one: what ``make train``
uses, jemalloc where installed; older ones: tuned glibc) and, for this checkout, every precision
of ``--precisions`` (the other runs fp32). A ratio between checkouts measured this way carries
over to another machine; seconds do not.

    git worktree add /tmp/old ff762f7
    python -m benchmarks.bench_versions --other /tmp/old [--models lstm,af_af,iaf_scf]
        [--batches median,long] [--precisions fp32,bf16] [--rounds 2]

Writes benchmarks/results/versions.csv and prints every repetition and the medians. Each
checkout's rows run as ``python -m benchmarks.bench_train`` in that checkout (an older one,
whose benchmarks folder is no package, too).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks import REPO, RESULTS
from benchmarks.bench_train import row_environment
from benchmarks.csv_rows import write_rows
from latentflow import runtime

HERE = REPO
PLAN = (
    "import argparse, json; import benchmarks.bench_train as b; "
    "a = argparse.Namespace(sizes=['paper'], quick=False, batches={batches!r}, models=None, "
    "device='cpu', steps={steps}, no_eval=True, allocators=False, threads={threads}, root=None, "
    "precisions={precisions!r}, compile=False); print(json.dumps(b.plan(a)))"
)


def environment(checkout: Path, threads: int, allocator: str = "glibc-tuned") -> dict[str, str]:
    env = row_environment(threads, allocator)  # as bench_train's own rows
    env["PYTHONPATH"] = str(checkout / "src")  # that checkout's latentflow, not the installed one
    return env


def rows_of(
    checkout: Path, steps: int, threads: int, batches: str, precisions: list[str]
) -> dict[tuple, dict]:
    """The checkout's own plan: (model, batch, precision) -> row."""
    code = PLAN.format(steps=steps, threads=threads, batches=batches, precisions=precisions)
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=checkout,
        env=environment(checkout, threads),
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise SystemExit(
            f"{checkout}: its benchmarks/bench_train.py has no usable plan(): {out.stderr[-500:]}"
        )
    plan: dict[tuple, dict] = {}
    for r in json.loads(out.stdout.strip().splitlines()[-1]):
        if r.get("mode", "train") == "train":  # the first is the main row: the allocator rows
            # of the long AF/AF batch (the same key, other allocators) come after it
            plan.setdefault((r["model"], r["batch_name"], r.get("precision", "fp32")), r)
    return plan


def time_row(checkout: Path, row: dict, threads: int) -> float:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_train", "--row", json.dumps(row)],
        cwd=checkout,
        env=environment(checkout, threads, row["allocator"]),
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{checkout}: row {row['model']} failed: {proc.stderr[-800:]}")
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["seconds"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other", type=Path, required=True, help="the other checkout")
    parser.add_argument("--models", default="lstm,af_af,iaf_scf")
    parser.add_argument("--batches", default="median", help="median,long")
    parser.add_argument("--precisions", default="fp32", help="this checkout's: fp32,bf16")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per row")
    parser.add_argument("--threads", type=int, default=2)
    return parser


def time_rounds(args, checkouts: dict[str, Path], plans: dict, runs: list) -> list[dict]:
    """Every round: each batch and model on each run (label, checkout, precision), the order
    of the runs reversed every other round."""
    results = []
    for rnd in range(args.rounds):
        for batch in args.batches.split(","):
            for model in args.models.split(","):
                for label, name, precision in runs if rnd % 2 else runs[::-1]:
                    key = (model, batch, precision)
                    if key not in plans[name]:
                        raise SystemExit(f"--models: {key} is not a row of {checkouts[name]}")
                    row = {**plans[name][key], "count": False}  # timing only (newer benches)
                    seconds = time_row(checkouts[name], row, args.threads)
                    results.append(
                        {"round": rnd, "model": model, "batch": batch, "checkout": name,
                         "precision": precision, "allocator": row["allocator"],
                         "seconds": seconds}
                    )  # fmt: skip
                    print(
                        f"round {rnd} {batch:6s} {model:8s} {label:10s} {row['allocator']:11s}"
                        f" {seconds:8.3f} s",
                        flush=True,
                    )
    return results


def print_medians(args, results: list[dict], runs: list) -> None:
    print(f"\nmedian s/step ({args.threads} threads; this = {HERE}, other = {args.other})")
    for batch in args.batches.split(","):
        for model in args.models.split(","):
            med = {
                label: statistics.median(
                    r["seconds"]
                    for r in results
                    if (r["model"], r["batch"], r["checkout"], r["precision"])
                    == (model, batch, name, precision)
                )
                for label, name, precision in runs
            }
            shown = "  ".join(
                f"{label} {med[label]:8.3f} (other/this {med['other'] / med[label]:.2f}x)"
                for label, _, _ in runs[1:]
            )
            print(f"  {batch:6s} {model:8s} other {med['other']:8.3f}  {shown}")


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    if not (args.other / "benchmarks" / "bench_train.py").exists():
        parser.error(f"--other {args.other}: no benchmarks/bench_train.py there")
    precisions = args.precisions.split(",")
    if set(precisions) - {"fp32", "bf16"} or set(args.batches.split(",")) - {"median", "long"}:
        parser.error("--precisions takes fp32,bf16 and --batches median,long")
    if not Path(runtime.JEMALLOC).exists():
        print(
            f"{runtime.JEMALLOC} not installed: this checkout's rows run on tuned glibc",
            flush=True,
        )
    checkouts = {"this": HERE, "other": args.other.resolve()}
    plans = {
        "this": rows_of(HERE, args.steps, args.threads, args.batches, precisions),
        "other": rows_of(checkouts["other"], args.steps, args.threads, args.batches, ["fp32"]),
    }
    # (label, checkout, precision): the other checkout in fp32, this one in each precision
    runs = [("other", "other", "fp32")] + [(f"this-{p}", "this", p) for p in precisions]
    results = time_rounds(args, checkouts, plans, runs)
    write_rows(RESULTS / "versions.csv", results)
    print_medians(args, results, runs)


if __name__ == "__main__":
    main()
