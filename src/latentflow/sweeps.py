"""Hydra hooks for sweeps (``-m``): the sweep directory exists before the sweeper needs it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback


class CreateSweepDir(Callback):
    """Create ``hydra.sweep.dir`` when a multirun starts: the Optuna sweeper opens its sqlite
    study there before any job (which would create it) has run."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        Path(config.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)
        from latentflow.optuna_grid import let_a_used_up_grid_end_quietly

        let_a_used_up_grid_end_quietly()
