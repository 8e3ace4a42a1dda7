"""The Lightning callback that reports a trial's validation curve to its Optuna study and stops
the trial when the study's pruner says it lags.

Why not ``optuna_integration.PyTorchLightningPruningCallback``: it subclasses
``lightning.pytorch.Callback`` (the ``lightning`` package), which the ``pytorch_lightning``
Trainer this project runs does not accept as a callback (measured with optuna-integration
5.0.0 and pytorch-lightning 2.6); the part it adds for DDP is not needed by single-process
trials. This is the same logic in the package's Lightning.
"""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl


class PruneLagging(pl.Callback):
    """After each validation, report ``monitor`` at ``trainer.global_step`` to ``trial``; raise
    ``optuna.TrialPruned`` when the pruner prunes it. Steps up to ``reported_until`` are already
    in the study (a retried trial resuming its checkpoint) and are not reported again.
    A pruned trial's W&B run, if any, is tagged ``pruned``."""

    def __init__(self, trial: Any, monitor: str, reported_until: int = -1) -> None:
        self.trial = trial
        self.monitor = monitor
        self.reported_until = reported_until
        self.pruned_at: tuple[int, float] | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        import optuna

        value = trainer.callback_metrics.get(self.monitor)
        step = trainer.global_step
        if trainer.sanity_checking or value is None or step <= self.reported_until:
            return
        value = float(value)
        self.trial.report(value if math.isfinite(value) else math.nan, step)
        self.reported_until = step
        if self.trial.should_prune():
            self.pruned_at = (step, value)
            tag_wandb_runs(trainer, "pruned")
            raise optuna.TrialPruned(f"pruned at step {step}: {self.monitor}={value:.4f}")


def tag_wandb_runs(trainer: pl.Trainer, tag: str) -> None:
    """Add ``tag`` to the W&B run of each W&B logger of ``trainer``."""
    for logger in trainer.loggers:
        if type(logger).__name__ == "WandbLogger":
            run = logger.experiment
            run.tags = (*tuple(run.tags or ()), tag)
