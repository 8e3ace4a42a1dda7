"""Train several recipes over several seeds, a few runs at a time, each resumable.

    python scripts/seed_runs.py --out runs/jsb --seeds 0,1,2 --parallel 2 \
        af_af="experiment=cpu/jsb/af_af" \
        af_af_spline="experiment=cpu/jsb/af_af transform=spline" \
        lstm="experiment=cpu/jsb/lstm"

Each run goes to ``<out>/<name>_s<seed>`` (what ``scripts/seed_table.py`` reads) with
``ckpt_path=auto``, so running the same command again after an interruption resumes every
unfinished run exactly and skips the finished ones (those with a metrics.json). ``--parallel``
runs share the cores: each gets ``runtime.threads = cores // parallel`` (at least 1) unless
``--threads`` says otherwise. Logs: ``<out>/<name>_s<seed>/train.log`` (the run's own log)
and ``console.log`` beside it (what the process printed: warnings, a one-line error).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="+", help='NAME="OVERRIDES" (space-separated overrides)')
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--threads", type=int, help="threads per run (default: cores // parallel)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",") if s]
    rows = []
    for row in args.rows:
        name, sep, overrides = row.partition("=")
        if not sep or not name or not overrides.strip():
            parser.error(f'{row!r}: write NAME="OVERRIDES", e.g. af_af="experiment=cpu/jsb/af_af"')
        rows.append((name, overrides.split()))
    if args.parallel < 1:
        parser.error("--parallel must be >= 1")
    threads = (
        args.threads
        if args.threads is not None
        else max(1, (os.cpu_count() or 1) // args.parallel)
    )
    if threads < 1:
        parser.error("--threads must be >= 1")
    queue = [
        (f"{name}_s{seed}", overrides, seed)
        for seed in seeds
        for name, overrides in rows
        if not (args.out / f"{name}_s{seed}" / "metrics.json").exists()
    ]
    print(
        f"{len(queue)} runs to do, {args.parallel} at a time, {threads} thread(s) each", flush=True
    )
    running: list[tuple[str, subprocess.Popen]] = []
    failed = []
    while queue or running:
        for name, proc in list(running):
            if proc.poll() is not None:
                running.remove((name, proc))
                status = "done" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
                print(f"{time.strftime('%H:%M:%S')} {name}: {status}", flush=True)
                if proc.returncode:
                    failed.append(name)
        while queue and len(running) < args.parallel:
            name, overrides, seed = queue.pop(0)
            run_dir = args.out / name
            run_dir.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, "-m", "latentflow.train", *overrides, f"seed={seed}",
                   f"runtime.threads={threads}", f"hydra.run.dir={run_dir.resolve()}",
                   "ckpt_path=auto", "trainer.enable_progress_bar=false"]  # fmt: skip
            # not train.log: the run's own logger writes there, and each line would appear twice
            log = open(run_dir / "console.log", "a")  # noqa: SIM115 (the child holds it open)
            env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
            running.append(
                (name, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env))
            )
            print(f"{time.strftime('%H:%M:%S')} {name}: started", flush=True)
        time.sleep(2)
    if failed:
        raise SystemExit(f"{len(failed)} run(s) failed: {', '.join(failed)} (see console.log)")


if __name__ == "__main__":
    main()
