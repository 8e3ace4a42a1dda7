"""Learning-rate decay on a validation plateau, after KL annealing (the reference's schedule)."""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback


class PlateauLRDecay(Callback):
    """Multiply every learning rate by ``factor`` when ``monitor`` has not improved for
    ``patience`` validations, counting only from ``start_epoch`` and ``start_step`` (the end of
    KL annealing, in epochs or in optimizer steps).

    The reference code divides the LR by 4 on a plateau of 1 (PTB flows), 2 (music flows) or 4
    (baselines) epochs once annealing is done. Unlike it, Adam's moments are kept (it re-created
    the optimiser). The counters travel in checkpoints, so a resumed run decays at the same
    epochs; the current LR is logged as ``train/lr``.
    """

    def __init__(
        self,
        monitor: str = "val/nll",
        factor: float = 0.25,
        patience: int = 2,
        start_epoch: int = 0,
        min_lr: float = 1e-6,
        start_step: int = 0,
    ) -> None:
        if not 0.0 < factor < 1.0:
            raise ValueError(f"callbacks.lr_decay.factor must lie in (0, 1), got {factor}")
        if patience < 1:
            raise ValueError(f"callbacks.lr_decay.patience must be >= 1, got {patience}")
        self.monitor, self.factor, self.patience = monitor, factor, patience
        self.start_epoch, self.start_step, self.min_lr = start_epoch, start_step, min_lr
        self.best = math.inf
        self.bad = 0
        self.decays = 0

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        if trainer.current_epoch < self.start_epoch or trainer.global_step < self.start_step:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        value = float(value)
        if value < self.best:
            self.best, self.bad = value, 0
            return
        self.bad += 1
        if self.bad >= self.patience:
            self.bad = 0
            self.decays += 1
            for optimizer in trainer.optimizers:
                for group in optimizer.param_groups:
                    group["lr"] = max(self.min_lr, group["lr"] * self.factor)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 0 and trainer.optimizers:
            pl_module.log("train/lr", trainer.optimizers[0].param_groups[0]["lr"])

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad": self.bad, "decays": self.decays}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = state_dict.get("best", math.inf)
        self.bad = state_dict.get("bad", 0)
        self.decays = state_dict.get("decays", 0)
