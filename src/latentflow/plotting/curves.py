"""Training curves: ELBO, reconstruction, KL, KL weight and validation NLL from a run
directory's CSV logs."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from latentflow.plotting.figure import PathLike, as_float, new_figure, save_figure

Series = dict[str, tuple[np.ndarray, np.ndarray]]

CURVE_PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("-ELBO (nats / token)", ("train/elbo", "train/loss")),
    ("reconstruction -log p(x|z) (nats / token)", ("train/recon", "val/recon")),
    ("KL (nats / token)", ("train/kl", "val/kl")),
    ("KL weight", ("train/kl_weight",)),
    ("validation NLL (bpc | nats per step)", ("val/nll",)),
)
ZOOM_TITLE = "validation NLL at full KL weight (* best)"


def metrics_files(run: PathLike) -> list[Path]:
    """The CSVLogger files of a run: ``<run>/csv/version_*/metrics.csv`` (a resumed run adds a
    version), or ``run`` itself when it is a metrics CSV."""
    run = Path(run)
    if run.is_file():
        return [run]
    files = sorted(
        run.glob("csv/version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[-1])
    )
    files = files or sorted(run.glob("version_*/metrics.csv"))
    if not files:
        raise FileNotFoundError(
            f"no csv/version_*/metrics.csv under {run} (train with logger=csv, the default)"
        )
    return files


def read_metrics(run: PathLike) -> Series:
    """Every logged metric of a run as ``{name: (steps, values)}``, sorted by step."""
    series: dict[str, list[tuple[float, float]]] = {}
    for file in metrics_files(run):
        with file.open(newline="") as fh:
            for row in csv.DictReader(fh):
                step = as_float(row.get("step"))
                if not math.isfinite(step):
                    continue
                for key, value in row.items():
                    if key in ("step", "epoch") or value in (None, ""):
                        continue
                    v = as_float(value)
                    if math.isfinite(v):
                        series.setdefault(key, []).append((step, v))
    out = {}
    for key, pairs in series.items():
        pairs.sort(key=lambda p: p[0])
        arr = np.asarray(pairs, dtype=np.float64)
        out[key] = (arr[:, 0], arr[:, 1])
    return out


def moving_average(values: np.ndarray, weight: float = 0.8) -> np.ndarray:
    """Exponential moving average of ``values`` (``weight`` on the past), as TensorBoard
    smooths."""
    out, acc = np.empty_like(values), values[0]
    for i, v in enumerate(values):
        acc = weight * acc + (1 - weight) * v
        out[i] = acc
    return out


def draw_curve_panel(ax: Axes, title: str, keys: tuple[str, ...], metrics: Series, smooth: float):
    """One panel: the metrics of ``keys`` that were logged, or "not logged"."""
    drawn = False
    for key in keys:
        if key not in metrics:
            continue
        steps, values = metrics[key]
        if key.startswith("train/") and len(values) > 2 and key != "train/kl_weight":
            (line,) = ax.plot(steps, values, alpha=0.25, lw=0.8)
            ax.plot(steps, moving_average(values, smooth), color=line.get_color(), label=key)
        else:
            ax.plot(steps, values, marker="o" if key.startswith("val/") else None, label=key)
        drawn = True
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("step", fontsize=8)
    if drawn:
        ax.legend(frameon=False, fontsize=7)
    else:
        ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)


def full_weight_nll(metrics: Series) -> tuple[np.ndarray, np.ndarray]:
    """``val/nll`` of the validations during training from the first step at KL weight 1 on
    (all of them when no weight is logged: the LSTM, or a run without annealing), the
    annealing phase's NLL being orders larger. The final evaluation of the best checkpoint,
    logged at the test numbers' step, is left out."""
    steps, values = (np.asarray(a, dtype=np.float64) for a in metrics["val/nll"])
    everything = np.ones(steps.shape, dtype=bool)
    keep = ~np.isin(steps, metrics["test/nll"][0]) if "test/nll" in metrics else everything
    if "train/kl_weight" in metrics:
        w_steps, weights = metrics["train/kl_weight"]
        full = w_steps[weights >= 1.0 - 1e-9]
        keep &= steps >= full[0] if len(full) else False
    return steps[keep], values[keep]


def draw_zoom_panel(
    ax: Axes, metrics: Series, label: str | None = None, style: dict | None = None
) -> float | None:
    """Validation NLL once the KL weight is 1, its best point starred (and written, or in the
    legend when ``label``; ``style``: the line's matplotlib keywords); the y axis spans the best
    value + 3. Returns the best value."""
    steps, values = full_weight_nll(metrics) if "val/nll" in metrics else ([], [])
    ax.set_title(ZOOM_TITLE, fontsize=9)
    ax.set_xlabel("step", fontsize=8)
    if not len(values):
        if label is None:
            ax.text(
                0.5,
                0.5,
                "KL weight never reached 1",
                ha="center",
                va="center",
                transform=ax.transAxes,
            )
        return None
    best = int(np.argmin(values))
    text = f"{values[best]:.3f}"
    kw = {"marker": "o", "ms": 3} | (style or {})
    (line,) = ax.plot(steps, values, label=label and f"{label} (best {text})", **kw)
    ax.plot(steps[best], values[best], "*", ms=12, color=line.get_color())
    if label is None:
        ax.annotate(
            text,
            (steps[best], values[best]),
            fontsize=7,
            xytext=(4, -10),
            textcoords="offset points",
        )
        ax.set_ylim(values[best] - 0.2, min(values.max(), values[best] + 3.0) + 0.2)
    return float(values[best])


def plot_training_curves(
    run: PathLike | Series,
    smooth: float = 0.6,
    path: PathLike | None = None,
    dpi: int = 110,
) -> Figure:
    """ELBO, reconstruction, KL and KL weight against optimizer steps (train: raw, faint, and
    smoothed with an exponential moving average of weight ``smooth``; validation: markers),
    plus the validation NLL, whole and from KL weight 1 on, from a run directory (or what
    ``read_metrics`` returned)."""
    metrics = run if isinstance(run, dict) else read_metrics(run)
    if not any(k in metrics for _, keys in CURVE_PANELS for k in keys):
        raise ValueError(f"no training metrics found (have: {sorted(metrics)})")
    fig = new_figure(11.0, 6.0)
    axes = fig.subplots(2, 3).ravel()
    for ax, (title, keys) in zip(axes, CURVE_PANELS, strict=False):
        draw_curve_panel(ax, title, keys, metrics, smooth)
    draw_zoom_panel(axes[len(CURVE_PANELS)], metrics)
    if not isinstance(run, dict):
        fig.suptitle(str(run), fontsize=8)
    return save_figure(fig, path, dpi)


def plot_validation_comparison(
    runs: list[PathLike], path: PathLike | None = None, dpi: int = 110
) -> Figure:
    """Several runs' validation NLL at full KL weight in one panel (a line each, named by its
    directory, best points starred): seeds and rows side by side. Runs named ``<row>_s<seed>``
    share their row's colour, a line style per seed."""
    fig = new_figure(7.0, 4.5)
    ax = fig.subplots()
    bests, colours = [], {}
    for i, run in enumerate(runs):
        metrics = read_metrics(run)
        if "val/nll" not in metrics:
            raise ValueError(f"{run}: no val/nll logged")
        name = Path(run).name
        row, seed = re.fullmatch(r"(.+?)(?:_s(\d+))?", name).groups()
        colour = colours.setdefault(row, f"C{len(colours) % 10}")
        style = {"color": colour, "ls": ("-", "--", ":", "-.")[int(seed or i) % 4]}
        best = draw_zoom_panel(ax, metrics, label=name, style=style)
        bests += [] if best is None else [best]
    if bests:  # from the best run's best to 3 above the worst run's best
        ax.set_ylim(min(bests) - 0.2, max(bests) + 3.0)
    ax.legend(frameon=False, fontsize=7)
    return save_figure(fig, path, dpi)
