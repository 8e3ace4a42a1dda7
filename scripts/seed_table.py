"""Mean and spread over seeds of the runs under some directories: one Markdown row per recipe.

    python scripts/seed_table.py /work/runs/t3 /work/runs/t17     # run dirs named <row>_s<seed>

Each row: the seeds found, test NLL in the paper's convention and in the music literature's
(mean ± sample standard deviation over seeds, then every seed's value), validation NLL, epochs.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path


def spread(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.3f}" if values else "—"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", type=Path)
    args = parser.parse_args()
    rows: dict[str, list[tuple[int, dict]]] = {}
    for root in args.roots:
        for path in sorted(root.glob("*/metrics.json")):
            match = re.fullmatch(r"(.+)_s(\d+)", path.parent.name)
            if match:
                payload = json.loads(path.read_text())
                rows.setdefault(match[1], []).append((int(match[2]), payload))
    print("| row | seeds | test NLL, paper conv. (nats) | test NLL, cond. (nats) | per seed "
          "(paper) | val NLL | epochs |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name, runs in sorted(rows.items(), key=lambda kv: statistics.mean(
            p["test"]["nll_paper_nats"] for _, p in kv[1])):  # fmt: skip
        runs.sort()
        paper = [p["test"]["nll_paper_nats"] for _, p in runs]
        cond = [p["test"]["nll_cond_nats"] for _, p in runs]
        val = [p["val"]["nll"] for _, p in runs]
        each = ", ".join(f"{v:.3f}" for v in paper)
        epochs = ", ".join(str(p["epochs"]) for _, p in runs)
        seeds = ",".join(str(s) for s, _ in runs)
        print(f"| {name} | {seeds} | {spread(paper)} | {spread(cond)} | {each} | "
              f"{spread(val)} | {epochs} |")  # fmt: skip


if __name__ == "__main__":
    main()
