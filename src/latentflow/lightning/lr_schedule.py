"""Learning-rate decay on a validation plateau, after KL annealing (the reference's schedule)."""

from __future__ import annotations

import math
from typing import Any

import torch


class PlateauLRDecay:
    """Multiply every learning rate of ``optimizer`` by ``factor`` when ``monitor`` has not
    improved for ``patience`` validations, counting only from ``start_epoch`` and
    ``start_step`` (the end of KL annealing, in epochs or in optimizer steps).

    The reference code divides the LR by 4 on a plateau of 1 (PTB flows), 2 (music flows) or 4
    (baselines) epochs once annealing is done. Unlike it, Adam's moments are kept (it re-created
    the optimiser). A ``ValidationLRSchedule`` (``latentflow.protocols``): the LightningModule
    calls ``on_validation`` after every validation of a fit and keeps ``state_dict`` in its
    checkpoints, so a resumed run decays at the same validations. ``start_epoch=None`` is 0.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        monitor: str = "val/nll",
        factor: float = 0.25,
        patience: int = 2,
        start_epoch: int | None = 0,
        start_step: int = 0,
        min_lr: float = 1e-6,
    ) -> None:
        if not 0.0 < factor < 1.0:
            raise ValueError(f"factor must lie in (0, 1), got {factor}")
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.optimizer, self.monitor = optimizer, monitor
        self.factor, self.patience, self.min_lr = factor, patience, min_lr
        self.start_epoch, self.start_step = start_epoch or 0, start_step
        self.best = math.inf
        self.bad = 0
        self.decays = 0

    def on_validation(self, value: float, epoch: int, global_step: int) -> None:
        if epoch < self.start_epoch or global_step < self.start_step:
            return
        if value < self.best:
            self.best, self.bad = value, 0
            return
        self.bad += 1
        if self.bad >= self.patience:
            self.bad = 0
            self.decays += 1
            for group in self.optimizer.param_groups:
                group["lr"] = max(self.min_lr, group["lr"] * self.factor)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad": self.bad, "decays": self.decays}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state.get("best", math.inf)
        self.bad = state.get("bad", 0)
        self.decays = state.get("decays", 0)
