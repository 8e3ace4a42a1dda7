"""Collect metrics.json files under run directories into Markdown tables (docs/results.md).

python scripts/results_table.py outputs/reproduce-cpu

Runs of ``latentflow-train`` and of ``latentflow-eval`` (a re-evaluation, e.g. at another S)
alike; a re-evaluation has no training columns ("—"). One table per dataset; text runs (their
metrics carry bits per character, whatever the dataset is called) in bpc, music runs in nats.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def unit_of(payload: dict) -> str:
    """``bpc`` for a run measured in bits per character (text), else ``nats`` (music)."""
    return "bpc" if "nll_paper_bpc" in payload["test"] else "nats"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", type=Path)
    args = parser.parse_args()
    runs = []
    for root in args.roots:
        for path in sorted(root.rglob("metrics.json")):
            payload = json.loads(path.read_text())
            if "test" in payload and payload.get("experiment"):
                runs.append((path.parent, payload))
    by_dataset: dict[tuple[str, str], list] = {}
    for run_dir, p in runs:
        # cpu/ptb/af_af -> ptb; a user's own top-level experiment is its own table
        dataset = p["experiment"].rsplit("/", 2)[-2] if "/" in p["experiment"] else p["experiment"]
        by_dataset.setdefault((dataset, unit_of(p)), []).append((run_dir, p))
    for (dataset, unit), rows in by_dataset.items():
        text = unit == "bpc"
        print(f"\n### {dataset}\n")
        print(
            f"| experiment | test NLL ({unit}, paper conv.) | ± s.e. | test NLL (cond.) | "
            f"recon | KL | val NLL | epochs | steps | train time | paper (full size) |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for _, p in sorted(rows, key=lambda r: r[1]["test"].get("nll", 1e9)):
            t, v = p["test"], p.get("val", {})
            scale = 1 / 0.6931471805599453 if text else 1.0
            paper = next(iter(p.get("paper", {}).values()), None)
            cells = [
                f"`{p['experiment']}`",
                fmt(t.get(f"nll_paper_{unit}")),
                fmt(t.get(f"nll_paper_{unit}_stderr"), 4),
                fmt(t.get(f"nll_cond_{unit}")),
                fmt(t.get("recon", 0) * scale),
                fmt(t.get("kl", 0) * scale),
                fmt(v.get("nll")),
                str(p.get("epochs", "—")),
                str(p.get("global_step", "—")),
                f"{p['train_time_s'] / 60:.1f} min" if "train_time_s" in p else "—",
                fmt(paper, 2),
            ]
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
