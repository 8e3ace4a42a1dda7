"""Paper Fig. 7: seconds to generate one sequence against its length, from the rows
``benchmarks.bench_sample`` writes (its CSV, or the rows themselves).

One column vocabulary, the benchmark's: ``model``, ``length``, ``batch_size`` and ``median_s``
(seconds per generation) are required; ``task`` (text | music) picks the panel and
``min_s``/``max_s`` draw a band where present; other columns ride along unread.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from latentflow.plotting.figure import PathLike, as_float, new_figure, save_figure

SPEED_COLUMNS = ("model", "length", "batch_size", "median_s")  # required
BAND_COLUMNS = ("min_s", "max_s")  # optional
MODEL_LABELS = {
    "iaf_scf": "IAF/SCF",
    "af_scf": "AF/SCF",
    "af_af": "AF/AF",
    "lstm": "LSTM",
    "lstm_nnlstm": "LSTM-ref",  # the LSTM stepped with one nn.LSTM call per step
    "iaf_scf_attention": "IAF/SCF-attn",
    "af_af_attention": "AF/AF-attn",
    "af_af_spline": "AF/AF-spline",
}
TASK_NAMES = {"text": "characters (PTB)", "music": "music"}


def model_label(model: str) -> str:
    """How a figure or table names a model row: ``IAF/SCF`` for ``iaf_scf``."""
    return MODEL_LABELS.get(model, model)


def speed_row(row: dict[str, Any]) -> dict[str, Any] | None:
    """One row with its numbers as numbers (``task`` '' where absent); None without a finite
    time, length and batch size (a failed point)."""
    seconds, length, batch = (as_float(row.get(k)) for k in ("median_s", "length", "batch_size"))
    if not all(math.isfinite(v) for v in (seconds, length, batch)):
        return None
    out = {**row, "task": row.get("task") or "", "model": str(row["model"])}
    out.update(median_s=seconds, length=int(length), batch_size=int(batch))
    for key in BAND_COLUMNS:
        if key in row:
            out[key] = as_float(row[key])
    return out


def read_benchmark_csv(path: PathLike) -> list[dict[str, Any]]:
    """The rows of a generation-speed CSV (``benchmarks.bench_sample``'s ``sample_speed.csv``)
    as ``speed_row`` returns them, failed points skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no benchmark CSV at {path}")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        fields = list(reader.fieldnames or [])
        missing = [k for k in SPEED_COLUMNS if k not in fields]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; have {fields}")
        rows = [speed_row(row) for row in reader]
    return [r for r in rows if r is not None]


def draw_speed_panel(ax: Axes, rows: list[dict[str, Any]], batches: list[int], logy: bool):
    """One line per (model, batch size) of ``rows`` (one task), a band where it was timed."""
    series: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in rows:
        series.setdefault((r["model"], r["batch_size"]), []).append(r)
    for (model, b), points in sorted(series.items()):
        points.sort(key=lambda r: r["length"])
        x = [r["length"] for r in points]
        label = model_label(model) if len(batches) == 1 else f"{model_label(model)} (B={b})"
        (line,) = ax.plot(x, [r["median_s"] for r in points], marker="o", ms=3, label=label)
        lo, hi = ([r.get(k, math.nan) for r in points] for k in BAND_COLUMNS)
        if all(math.isfinite(v) for v in lo + hi):
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, lw=0)
    ax.set(xlabel="sequence length T", ylabel="seconds per generation")
    if logy:
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    task = TASK_NAMES.get(rows[0]["task"], rows[0]["task"])
    suffix = f", batch {batches[0]}" if len(batches) == 1 else ""
    ax.set_title(f"generation time{': ' + task if task else ''}{suffix}", fontsize=10)
    ax.legend(frameon=False, fontsize=8)


def pick_batches(rows: list[dict[str, Any]], batch: int | None, every: bool) -> list[dict]:
    """The rows of ``batch`` (default: the smallest batch size), or all of them."""
    if not rows:
        raise ValueError("no benchmark rows to plot")
    if every:
        return rows
    batch = min(r["batch_size"] for r in rows) if batch is None else batch
    picked = [r for r in rows if r["batch_size"] == batch]
    if not picked:
        raise ValueError(f"no benchmark rows for batch {batch}")
    return picked


def plot_generation_speed(
    rows: Iterable[dict[str, Any]] | PathLike,
    batch: int | None = None,
    all_batches: bool = False,
    logy: bool = False,
    by_batch: bool = False,
    title: str | None = None,
    path: PathLike | None = None,
    dpi: int = 110,
) -> Figure:
    """Paper Fig. 7: seconds per generation vs sequence length, one line per model, one panel
    per ``task`` (text first). ``batch`` picks the batch size (default: the smallest; the
    paper's is 1); ``all_batches`` draws every batch size, in the same panels, or with
    ``by_batch`` one row of panels per batch size. ``title`` goes above the panels."""
    if isinstance(rows, str | Path):
        rows = read_benchmark_csv(rows)
    else:
        rows = [r for r in map(speed_row, rows) if r is not None]
    rows = pick_batches(rows, batch, all_batches or by_batch)
    tasks = sorted({r["task"] for r in rows}, key=lambda t: (t != "text", t))
    batches = sorted({r["batch_size"] for r in rows})
    groups = [[b] for b in batches] if by_batch else [batches]
    fig = new_figure(4.2 * len(tasks), 3.4 * len(groups) + (0.3 if title else 0.0))
    axes = np.atleast_2d(fig.subplots(len(groups), len(tasks), squeeze=False))
    for row_axes, group in zip(axes, groups, strict=True):
        for ax, task in zip(row_axes, tasks, strict=True):
            panel = [r for r in rows if r["task"] == task and r["batch_size"] in group]
            if panel:
                draw_speed_panel(ax, panel, group, logy)
            else:
                ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path, dpi)
