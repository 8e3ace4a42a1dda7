"""Early stopping that ignores the KL-annealing phase."""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.callbacks import EarlyStopping


class EarlyStoppingAfter(EarlyStopping):
    """``EarlyStopping`` whose checks start at ``start_epoch`` and ``start_step`` (optimizer
    steps: the end of a step-based KL annealing).

    While the KL weight ramps up the validation NLL first rises, then falls. A plain
    ``EarlyStopping`` counts those epochs as "no improvement" and, because Lightning honours
    ``min_epochs`` by merely postponing a stop it already decided, ends the run right at
    ``min_epochs`` even when the NLL is still improving. Here epochs before ``start_epoch``
    neither count towards patience nor set the best score. ``start_epoch=None`` is 0.

    Only public hooks: the check runs in ``on_train_epoch_end`` or ``on_validation_end``
    (``check_on_train_epoch_end`` picks which); before the start both do nothing.
    """

    def __init__(self, start_epoch: int | None = 0, start_step: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.start_epoch, self.start_step = start_epoch or 0, start_step

    def started(self, trainer: pl.Trainer) -> bool:
        """Whether the checks have started (the annealing phase is over)."""
        return trainer.current_epoch >= self.start_epoch and trainer.global_step >= self.start_step

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.started(trainer):
            super().on_train_epoch_end(trainer, pl_module)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.started(trainer):
            super().on_validation_end(trainer, pl_module)
