"""PlateauLRDecay: decays only after its start, after `patience` non-improving validations;
chosen by the lr_schedule group and stepped by the LightningModule, its state in checkpoints."""

from __future__ import annotations

import pytest
import torch

from latentflow.components import ComponentError, instantiate
from latentflow.lightning.checkpoint_io import load_checkpoint_file
from latentflow.lightning.lr_schedule import PlateauLRDecay
from latentflow.run import train

from .helpers import TINY, compose_config

# val/nll per epoch: noisy rise during "annealing" (0-3), improvement, then a plateau.
CURVE = [5.0, 6.0, 7.0, 8.0, 4.0, 3.0, 3.1, 3.2, 3.3, 3.4, 3.5, 3.6]


def optimizer() -> torch.optim.Optimizer:
    return torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)


# One batch per epoch: epoch e's validation runs at global step e + 1 (step-based annealing).
@pytest.mark.parametrize("start", [{"start_epoch": 4}, {"start_step": 5}])
def test_decays_after_plateau_only_after_annealing(start):
    opt = optimizer()
    schedule = PlateauLRDecay(opt, patience=2, factor=0.25, **start)
    lrs = []
    for epoch, value in enumerate(CURVE):
        lrs.append(opt.param_groups[0]["lr"])  # what the epoch trains with
        schedule.on_validation(value, epoch, epoch + 1)
    # Epochs 0-3 rise but are ignored; best 3.0 at epoch 5; bad at 6, 7 -> decay before epoch 8;
    # bad at 8, 9 -> decay before epoch 10; bad at 10, 11 -> third decay (after the last epoch).
    assert lrs == pytest.approx([1e-3] * 8 + [2.5e-4] * 2 + [6.25e-5] * 2)
    assert schedule.decays == 3 and schedule.state_dict()["best"] == 3.0
    again = PlateauLRDecay(optimizer(), patience=2)
    again.load_state_dict(schedule.state_dict())
    assert again.state_dict() == schedule.state_dict()


def test_rejects_bad_settings():
    with pytest.raises(ValueError, match="factor"):
        PlateauLRDecay(optimizer(), factor=1.5)
    with pytest.raises(ValueError, match="patience"):
        PlateauLRDecay(optimizer(), patience=0)
    node = {"_target_": "latentflow.lightning.lr_schedule.PlateauLRDecay", "factor": 2.0}
    with pytest.raises(ComponentError, match="lr_schedule .*factor must lie in"):
        instantiate(node, "lr_schedule", partial=True)(optimizer())


def test_the_group_drives_a_real_run_and_its_checkpoint(tmp_path, real_data_root):
    """A monitor that never improves (the token count) decays after every validation but the
    first: 4 epochs -> 3 decays, in the optimizer and in the checkpoint's schedule state."""
    overrides = [
        *TINY,
        f"data.root={real_data_root}",
        "trainer.max_epochs=4",
        "lr_schedule=plateau",
        "lr_schedule.monitor=val/num_tokens",
        "lr_schedule.patience=1",
        "lr_schedule.factor=0.5",
        "test=false",
    ]
    train(compose_config("train", overrides, tmp_path))
    ckpt = load_checkpoint_file(tmp_path / "checkpoints" / "last.ckpt")
    assert ckpt["lr_schedule"]["decays"] in (2, 3)  # last.ckpt: before or after the last one
    lr = ckpt["optimizer_states"][0]["param_groups"][0]["lr"]
    assert lr == pytest.approx(1e-3 * 0.5 ** ckpt["lr_schedule"]["decays"])
