"""Early stopping that ignores the KL-annealing phase."""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.callbacks import EarlyStopping


class EarlyStoppingAfter(EarlyStopping):
    """``EarlyStopping`` whose checks start at ``start_epoch``.

    While the KL weight ramps up the validation NLL first rises, then falls. A plain
    ``EarlyStopping`` counts those epochs as "no improvement" and, because Lightning honours
    ``min_epochs`` by merely postponing a stop it already decided, ends the run right at
    ``min_epochs`` even when the NLL is still improving. Here epochs before ``start_epoch``
    neither count towards patience nor set the best score.
    """

    def __init__(self, start_epoch: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.start_epoch = start_epoch

    def _run_early_stopping_check(self, trainer: pl.Trainer) -> None:
        if trainer.current_epoch < self.start_epoch:
            return
        super()._run_early_stopping_check(trainer)
