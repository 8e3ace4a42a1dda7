"""Write a benchmark's rows as CSV: the header from the first row, all or nothing."""

from __future__ import annotations

import csv
import os
from pathlib import Path


def write_rows(path: Path, rows: list[dict]) -> None:
    """Write `rows` (dicts with the same keys) to `path`, creating its folder; a crash leaves
    the previous file as it was (the rows go to a temporary file that then replaces it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        with open(partial, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
