"""The paper's figures, made from your own models, checkpoints and runs.

* Fig. 5a/b -- ``plot_nlsq_composition`` (``latentflow.plotting.nlsq``): hand-set NLSq layers
  and the density they map a standard Gaussian to (one smooth bijection, several modes).
* Fig. 5c -- ``plot_toy_densities`` (``.toy_densities``): a 5-layer AF with NLSq vs affine
  fitted to a mixture of four Gaussians (``latentflow.toy``), test NLL of each and the true
  entropy in the titles.
* Fig. 6 -- ``plot_prior_densities`` (``.prior_densities``): for an H = 2 flow model, the
  conditional prior densities p(z_t | z_{<t}) on a grid for each character of a string,
  z_{<t} drawn from q(z | x), with the encoding of every vocabulary symbol marked.
* Fig. 7 -- ``plot_generation_speed`` (``.speed``): generation time vs length from the rows of
  ``benchmarks.bench_sample``.
* ``plot_training_curves`` (``.curves``): ELBO, reconstruction, KL, KL weight (and validation
  NLL, whole and from KL weight 1 on) from a run directory's CSV logs;
  ``plot_validation_comparison``: several runs' validation NLL at full KL weight in one panel.

Every ``plot_*`` function returns a ``matplotlib.figure.Figure`` drawn on an Agg canvas (no
pyplot, no global backend switch: it works headless, in the CLI and in notebooks) and saves it
when given ``path``.
"""

from latentflow.plotting.curves import (
    CURVE_PANELS,
    metrics_files,
    moving_average,
    plot_training_curves,
    plot_validation_comparison,
    read_metrics,
)
from latentflow.plotting.figure import PathLike, new_figure, save_figure
from latentflow.plotting.nlsq import (
    NLSQ_LAYERS,
    count_modes,
    nlsq_composition,
    plot_nlsq_composition,
)
from latentflow.plotting.prior_densities import (
    DEFAULT_FOCUS,
    DEFAULT_TEXT,
    PriorDensities,
    conditional_log_density,
    plot_prior_densities,
    prior_contexts,
    prior_densities,
    symbol_encodings,
    tokenize,
)
from latentflow.plotting.speed import (
    MODEL_LABELS,
    SPEED_COLUMNS,
    model_label,
    plot_generation_speed,
    read_benchmark_csv,
)
from latentflow.plotting.toy_densities import density_grid, plot_toy_densities

__all__ = [
    "CURVE_PANELS",
    "DEFAULT_FOCUS",
    "DEFAULT_TEXT",
    "MODEL_LABELS",
    "NLSQ_LAYERS",
    "SPEED_COLUMNS",
    "PathLike",
    "PriorDensities",
    "conditional_log_density",
    "count_modes",
    "density_grid",
    "metrics_files",
    "model_label",
    "moving_average",
    "new_figure",
    "nlsq_composition",
    "plot_generation_speed",
    "plot_nlsq_composition",
    "plot_prior_densities",
    "plot_toy_densities",
    "plot_training_curves",
    "plot_validation_comparison",
    "prior_contexts",
    "prior_densities",
    "read_benchmark_csv",
    "read_metrics",
    "save_figure",
    "symbol_encodings",
    "tokenize",
]
