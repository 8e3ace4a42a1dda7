"""What every figure shares: a headless canvas, saving, and reading numbers from CSV cells."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

PathLike = str | Path


def new_figure(width: float, height: float) -> Figure:
    """A figure of ``width`` x ``height`` inches on an Agg canvas (no pyplot, no global
    backend switch: it works headless, in the CLI and in notebooks)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: PathLike | None, dpi: int = 110) -> Figure:
    """Save ``fig`` to ``path`` (its folder created) when given one; return ``fig``."""
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi)
    return fig


def as_float(value: Any) -> float:
    """A CSV cell as a number; NaN when it is none."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
