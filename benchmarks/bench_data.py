"""Data loading speed: PTB train batches at the paper's settings (15 sentences, bucketed).

Streams whole epochs through the DataLoader (num_workers=0, one thread), prints characters per
second and writes benchmarks/results/data.csv. Target: >= 50,000 chars/s, far above what the
models consume (under 2,000 chars/s for the LSTM baseline on this machine kind).

    python -m benchmarks.bench_data [--root DIR] [--epochs 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks import RESULTS
from benchmarks.csv_rows import write_rows
from latentflow.data.datamodules import PTBCharDataModule

CSV = RESULTS / "data.csv"
TARGET = 50_000


def stream(loader: torch.utils.data.DataLoader) -> dict[str, float]:
    """Iterate a loader once; count batches, real and padded characters, time."""
    batches = chars = padded = 0
    start = time.perf_counter()
    for batch in loader:
        batches += 1
        chars += int(batch["lengths"].sum())
        padded += batch["x"].numel()
    seconds = time.perf_counter() - start
    return {"batches": batches, "chars": chars, "padded": padded, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None, help="data root (default: LATENTFLOW_DATA)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per loader")
    args = parser.parse_args()
    torch.set_num_threads(1)

    dm = PTBCharDataModule(root=args.root, batch_size=15, num_workers=0)
    start = time.perf_counter()
    dm.prepare_data()
    dm.setup()
    setup_seconds = time.perf_counter() - start

    rows = []
    for name, make_loader in [("train", dm.train_dataloader), ("valid", dm.val_dataloader)]:
        runs = []
        for epoch in range(args.epochs):
            loader = make_loader()
            loader.batch_sampler.set_epoch(epoch)
            runs.append(stream(loader))
        seconds = statistics.median(r["seconds"] for r in runs)
        run = runs[0]
        rows.append(
            {
                "loader": name,
                "batch_size": 15,
                "batches": run["batches"],
                "chars": run["chars"],
                "padding_efficiency": round(run["chars"] / run["padded"], 4),
                "seconds_median": round(seconds, 4),
                "chars_per_s": round(run["chars"] / seconds),
                "setup_seconds": round(setup_seconds, 3),
            }
        )

    header = (
        f"{'loader':<7} {'batches':>8} {'chars':>10} {'pad eff':>8} {'s/epoch':>8} {'chars/s':>12}"
    )
    print(header)
    for r in rows:
        print(
            f"{r['loader']:<7} {r['batches']:>8} {r['chars']:>10,} "
            f"{r['padding_efficiency']:>8.3f} {r['seconds_median']:>8.3f} {r['chars_per_s']:>12,}"
        )
    print(f"setup (read + encode 3 splits): {setup_seconds:.2f} s; target >= {TARGET:,} chars/s")

    write_rows(CSV, rows)
    print(f"wrote {CSV}")


if __name__ == "__main__":
    main()
