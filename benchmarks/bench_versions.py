"""Training step of this checkout against another one (e.g. an older commit), side by side.

Rows of ``bench_train.py`` (paper sizes, 16 x 112 PTB batch, 2 threads, out-of-the-box
allocator), each in a fresh process through each checkout's own ``bench_train.py --row``, the
two checkouts alternating (ABBA...) so that the machine's drift falls on both. A ratio between
checkouts measured this way carries over to another machine; seconds do not.

    git worktree add /tmp/old ff762f7
    python benchmarks/bench_versions.py --other /tmp/old [--models lstm,af_af,iaf_scf] [--rounds 2]

Writes benchmarks/results/versions.csv and prints every repetition and the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from csv_rows import write_rows  # noqa: E402

HERE = Path(__file__).resolve().parents[1]
RESULTS = HERE / "benchmarks" / "results"
PLAN = (
    "import argparse, json, sys; sys.path.insert(0, 'benchmarks'); import bench_train as b; "
    "a = argparse.Namespace(sizes=['paper'], quick=False, batches='median', models=None, "
    "device='cpu', steps={steps}, no_eval=True, allocators=False, threads={threads}, root=None, "
    "precisions=['fp32'], compile=False); print(json.dumps(b.plan(a)))"
)


def environment(checkout: Path, threads: int) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}  # as bench_train's own rows
    env.pop("LD_PRELOAD", None)
    env["PYTHONPATH"] = str(checkout / "src")  # that checkout's latentflow, not the installed one
    return env


def rows_of(checkout: Path, steps: int, threads: int) -> dict[str, dict]:
    code = PLAN.format(steps=steps, threads=threads)
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=checkout,
        env=environment(checkout, threads),
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise SystemExit(
            f"{checkout}: its bench_train.py has no usable plan(): {out.stderr[-500:]}"
        )
    return {r["model"]: r for r in json.loads(out.stdout.strip().splitlines()[-1])}


def time_row(checkout: Path, row: dict, threads: int) -> float:
    proc = subprocess.run(
        [sys.executable, "benchmarks/bench_train.py", "--row", json.dumps(row)],
        cwd=checkout,
        env=environment(checkout, threads),
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{checkout}: row {row['model']} failed: {proc.stderr[-800:]}")
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other", type=Path, required=True, help="the other checkout")
    parser.add_argument("--models", default="lstm,af_af,iaf_scf")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per row")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if not (args.other / "benchmarks" / "bench_train.py").exists():
        parser.error(f"--other {args.other}: no benchmarks/bench_train.py there")
    checkouts = {"this": HERE, "other": args.other.resolve()}
    plans = {k: rows_of(c, args.steps, args.threads) for k, c in checkouts.items()}
    results = []
    for rnd in range(args.rounds):
        for model in args.models.split(","):
            order = ("this", "other") if rnd % 2 == 0 else ("other", "this")
            for name in order:
                if model not in plans[name]:
                    raise SystemExit(f"--models: {model} is not a row of {checkouts[name]}")
                row = {**plans[name][model], "count": False}  # timing only (newer benches)
                seconds = time_row(checkouts[name], row, args.threads)
                results.append(
                    {"round": rnd, "model": model, "checkout": name, "seconds": seconds}
                )
                print(f"round {rnd} {model:8s} {name:5s} {seconds:8.3f} s", flush=True)
    write_rows(RESULTS / "versions.csv", results)
    print(f"\nmedian s/step ({args.threads} threads; this = {HERE}, other = {args.other})")
    for model in args.models.split(","):
        med = {
            k: statistics.median(
                r["seconds"] for r in results if r["model"] == model and r["checkout"] == k
            )
            for k in checkouts
        }
        print(f"  {model:8s} this {med['this']:8.3f}  other {med['other']:8.3f}  "
              f"other/this {med['other'] / med['this']:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
