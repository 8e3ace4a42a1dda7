"""Copy what a finished run publishes (never its checkpoints) into the repository.

    python scripts/publish_runs.py /work/runs/jsb-paper docs/results/jsb-paper

For every ``<src>/<name>/`` with a ``metrics.json``: ``metrics.json``, ``config.yaml``,
``timing.csv`` and each ``csv/version_*/metrics.csv`` (a resumed run has several; the plotting
code merges them) go to ``<dest>/<name>/`` in the same layout, so ``latentflow-plot curves
<dest>/<name>`` draws the run's curves. Unfinished runs (no ``metrics.json``) are listed and
skipped.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

FILES = ("metrics.json", "config.yaml", "timing.csv")


def publish(src: Path, dest: Path) -> list[str]:
    """Copy every finished run under ``src`` to ``dest``; the names copied."""
    done = []
    for run in sorted(p for p in src.iterdir() if p.is_dir()):
        if not (run / "metrics.json").is_file():
            print(f"{run.name}: not finished (no metrics.json), skipped")
            continue
        out = dest / run.name
        out.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            if (run / name).is_file():
                shutil.copy2(run / name, out / name)
        for csv in sorted(run.glob("csv/version_*/metrics.csv")):
            target = out / csv.relative_to(run)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(csv, target)
        done.append(run.name)
        print(f"{run.name}: published to {out}")
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path, help="the folder holding the run directories")
    parser.add_argument("dest", type=Path, help="where they are published in the repository")
    args = parser.parse_args()
    if not args.src.is_dir():
        parser.error(f"{args.src} is not a directory")
    publish(args.src, args.dest)


if __name__ == "__main__":
    main()
