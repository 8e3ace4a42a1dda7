"""EarlyStoppingAfter: annealing-phase epochs neither stop the run nor set the best score."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from latentflow.lightning.early_stopping import EarlyStoppingAfter

# val/nll per epoch: rises during "annealing" (epochs 0-5), then keeps improving.
CURVE = [5.0, 6.0, 7.0, 8.0, 9.0, 9.5, 4.0, 3.5, 3.0, 2.9, 2.8, 2.7]


class Scripted(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        return (self.w - 1).pow(2).sum()

    def validation_step(self, batch, batch_idx):
        self.log("val/nll", CURVE[min(self.current_epoch, len(CURVE) - 1)])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.zeros(2, 1), batch_size=1)

    def val_dataloader(self):
        return torch.utils.data.DataLoader(torch.zeros(1, 1), batch_size=1)


def fit(callback, min_epochs: int) -> pl.Trainer:
    trainer = pl.Trainer(
        max_epochs=len(CURVE),
        min_epochs=min_epochs,
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(Scripted())
    return trainer


def test_plain_early_stopping_cuts_the_run_at_min_epochs():
    """The failure this class exists for (Lightning 2.6 behaviour)."""
    trainer = fit(pl.callbacks.EarlyStopping("val/nll", patience=2), min_epochs=6)
    assert trainer.current_epoch == 6  # stopped although val/nll was still improving


# Two batches per epoch: epoch 6's validation runs at global step 14 (step-based annealing).
@pytest.mark.parametrize("start", [{"start_epoch": 6}, {"start_step": 14}])
def test_checks_start_after_annealing(start):
    trainer = fit(EarlyStoppingAfter(monitor="val/nll", patience=2, **start), 6)
    assert trainer.current_epoch == len(CURVE)  # ran to the end: always improving after 6
    callback = trainer.callbacks[0]
    assert abs(callback.best_score.item() - CURVE[-1]) < 1e-6
