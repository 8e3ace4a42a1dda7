"""PlateauLRDecay: decays only after start_epoch, after `patience` non-improving validations."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from latentflow.lightning.lr_schedule import PlateauLRDecay

# val/nll per epoch: noisy rise during "annealing" (0-3), improvement, then a plateau.
CURVE = [5.0, 6.0, 7.0, 8.0, 4.0, 3.0, 3.1, 3.2, 3.3, 3.4, 3.5, 3.6]


class Scripted(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.lrs: list[float] = []

    def training_step(self, batch, batch_idx):
        self.lrs.append(self.trainer.optimizers[0].param_groups[0]["lr"])
        return (self.w - 1).pow(2).sum()

    def validation_step(self, batch, batch_idx):
        self.log("val/nll", CURVE[self.current_epoch])

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.zeros(1, 1), batch_size=1)

    def val_dataloader(self):
        return torch.utils.data.DataLoader(torch.zeros(1, 1), batch_size=1)


# One batch per epoch: epoch 4's validation runs at global step 5 (step-based annealing).
@pytest.mark.parametrize("start", [{"start_epoch": 4}, {"start_step": 5}])
def test_decays_after_plateau_only_after_annealing(start):
    module = Scripted()
    callback = PlateauLRDecay(patience=2, factor=0.25, **start)
    trainer = pl.Trainer(
        max_epochs=len(CURVE),
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module)
    # Epochs 0-3 rise but are ignored; best 3.0 at epoch 5; bad at 6, 7 -> decay before epoch 8;
    # bad at 8, 9 -> decay before epoch 10; bad at 10, 11 -> third decay (after the last epoch).
    expected = [1e-3] * 8 + [2.5e-4] * 2 + [6.25e-5] * 2
    assert module.lrs == pytest.approx(expected)
    assert callback.decays == 3 and callback.state_dict()["best"] == 3.0


def test_rejects_bad_settings():
    with pytest.raises(ValueError, match="factor"):
        PlateauLRDecay(factor=1.5)
    with pytest.raises(ValueError, match="patience"):
        PlateauLRDecay(patience=0)
