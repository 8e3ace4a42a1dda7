"""Mean and spread over seeds of the runs under some directories: one Markdown row per recipe.

    python scripts/seed_table.py /work/runs/t3 /work/runs/t17     # run dirs named <row>_s<seed>

Each row: the seeds found, test NLL in the paper's convention and in the music literature's
(mean ± sample standard deviation over seeds, then every seed's value), validation NLL, epochs.
``--versus ROW`` adds each row's difference of mean test NLL (paper conv.) to ROW's, in units of
ROW's seed standard deviation (negative: lower NLL than ROW). ``--paper`` adds the paper's
number (each run's ``metrics.json`` carries it) and the row's distance to it in units of the
row's own seed standard deviation. Text runs (their metrics carry bits per character) are tabled
in bpc with the training steps each made (the PTB rows train on a wall-clock budget), music runs
in nats per step with their epochs; one table never mixes the two.
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


def paper_columns(ours: list[float], paper: dict) -> str:
    """`` paper | diff (n sd) |``: the paper's test NLL and our mean's distance to it."""
    number = next(iter(paper.values()), None)
    if number is None:
        return " — | — |"
    diff = statistics.mean(ours) - number
    sds = f" ({diff / statistics.stdev(ours):+.1f} sd)" if len(ours) > 1 else " (one seed)"
    return f" {number:.2f} | {diff:+.3f}{sds} |"


def unit_of(payload: dict) -> str:
    """``bpc`` for a run measured in bits per character (text), else ``nats`` (music)."""
    return "bpc" if "nll_paper_bpc" in payload["test"] else "nats"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", type=Path)
    parser.add_argument("--versus", help="a row to compare every other row with")
    parser.add_argument("--paper", action="store_true", help="add the paper's number")
    args = parser.parse_args()
    rows: dict[str, list[tuple[int, dict]]] = {}
    for root in args.roots:
        for path in sorted(root.glob("*/metrics.json")):
            match = re.fullmatch(r"(.+)_s(\d+)", path.parent.name)
            if match:
                payload = json.loads(path.read_text())
                rows.setdefault(match[1], []).append((int(match[2]), payload))
    units = {unit_of(p) for runs in rows.values() for _, p in runs}
    if len(units) > 1:
        parser.error("these folders mix text runs (bpc) and music runs (nats): table them apart")
    unit = units.pop() if units else "nats"
    paper_key, cond_key = f"nll_paper_{unit}", f"nll_cond_{unit}"
    val_key = "nll" if unit == "nats" else paper_key  # music's val "nll" is in nats per step
    progress_key, progress = ("epochs", "epochs") if unit == "nats" else ("global_step", "steps")
    if args.versus and args.versus not in rows:
        parser.error(f"--versus {args.versus}: no run directory {args.versus}_s<seed> found")
    base = [p["test"][paper_key] for _, p in rows.get(args.versus, [])]
    if args.versus and len(base) < 2:
        parser.error(f"--versus {args.versus}: needs >= 2 seeds for a standard deviation")
    base_mean, base_sd = (statistics.mean(base), statistics.stdev(base)) if args.versus else (0, 1)
    extra = f" vs {args.versus} (its sd) |" if args.versus else ""
    extra += " paper | ours - paper (our sd) |" if args.paper else ""
    print(f"| row | seeds | test NLL, paper conv. ({unit}) | test NLL, cond. ({unit}) | per seed "
          f"(paper) | val NLL | {progress} |{extra}")  # fmt: skip
    print("|---" * (7 + bool(args.versus) + 2 * args.paper) + "|")
    for name, runs in sorted(rows.items(), key=lambda kv: statistics.mean(
            p["test"][paper_key] for _, p in kv[1])):  # fmt: skip
        runs.sort()
        paper = [p["test"][paper_key] for _, p in runs]
        cond = [p["test"][cond_key] for _, p in runs]
        val = [p["val"][val_key] for _, p in runs]
        each = ", ".join(f"{v:.3f}" for v in paper)
        trained = ", ".join(str(p[progress_key]) for _, p in runs)
        seeds = ",".join(str(s) for s, _ in runs)
        versus = ""
        if args.versus:
            diff = statistics.mean(paper) - base_mean
            versus = (
                " — |" if name == args.versus else f" {diff:+.3f} ({diff / base_sd:+.1f} sd) |"
            )
        if args.paper:
            versus += paper_columns(paper, runs[0][1].get("paper", {}))
        print(f"| {name} | {seeds} | {spread(paper)} | {spread(cond)} | {each} | "
              f"{spread(val)} | {trained} |{versus}")  # fmt: skip


if __name__ == "__main__":
    main()
