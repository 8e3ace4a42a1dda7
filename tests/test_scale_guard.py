"""The non-finite guard: a step with a NaN/inf loss or gradient is skipped and counted, and a
run that keeps producing them stops with a one-line error instead of training on NaN."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger

from .scale_helpers import run_cli, subprocess_env, synthetic_batch, tiny_module

# The synthetic fits have no validation data on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:.*but have no `val_dataloader`")

# Applied to the ELBO objective [B] inside the training step.
POISONS = {
    "nan_loss": lambda objective: objective * float("nan"),  # NaN loss and NaN gradients
    "inf_loss": lambda objective: objective - float("inf"),  # inf loss, finite gradients
    "nan_constant": lambda objective: objective + torch.tensor(float("nan")),  # NaN loss only
}


class ParamTrace(pl.Callback):
    """Parameters before and after each optimizer step."""

    def __init__(self) -> None:
        self.before: list[torch.Tensor] = []
        self.after: list[torch.Tensor] = []

    @staticmethod
    def flat(module: pl.LightningModule) -> torch.Tensor:
        return torch.cat([p.detach().flatten().clone() for p in module.parameters()])

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.before.append(self.flat(pl_module))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.after.append(self.flat(pl_module))


def fit(module, poison_steps: set[int], poison, tmp_path, steps: int = 6):
    """Fit ``steps`` synthetic batches; the objective of the steps in ``poison_steps`` is
    poisoned."""
    original = module.net.training_terms

    def training_terms(*args, **kwargs):
        out = original(*args, **kwargs)
        if module.global_step in poison_steps:
            out = {**out, "objective": poison(out["objective"])}
        return out

    module.net.training_terms = training_terms
    batches = [synthetic_batch([5, 4, 3], 10 * i) for i in range(steps)]
    trace = ParamTrace()
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_val_batches=0,
        gradient_clip_val=0.25,  # as the default trainer config: clipping sees no gradients
        logger=CSVLogger(tmp_path),
        callbacks=[trace],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    return trainer, trace


@pytest.mark.parametrize("poison", POISONS.values(), ids=POISONS.keys())
def test_nonfinite_steps_are_skipped_counted_and_logged(poison, tmp_path):
    torch.manual_seed(0)
    module = tiny_module()
    trainer, trace = fit(module, {1, 3}, poison, tmp_path)
    assert trainer.global_step == 6
    for step in range(6):
        changed = not torch.equal(trace.before[step], trace.after[step])
        assert changed == (step not in {1, 3}), step  # skipped steps leave parameters alone
    assert int(module.nonfinite_total) == 2 and module.nonfinite_in_a_row == 0
    assert all(torch.isfinite(p).all() for p in module.parameters())
    # Adam took 4 steps: the skipped ones did not touch its moments or step counts.
    state = trainer.optimizers[0].state
    assert {int(s["step"]) for s in state.values()} == {4}
    (metrics,) = (tmp_path / "lightning_logs").rglob("metrics.csv")
    header, *rows = metrics.read_text().splitlines()
    column = header.split(",").index("train/nonfinite_steps")
    logged = [float(r.split(",")[column]) for r in rows if r.split(",")[column]]
    assert logged == [0.0, 1.0, 1.0, 2.0, 2.0, 2.0]


def test_consecutive_nonfinite_steps_stop_training_with_a_clear_message(tmp_path):
    module = tiny_module()
    module.max_nonfinite_steps = 3
    with pytest.raises(FloatingPointError, match=r"3 consecutive steps had non-finite") as err:
        fit(module, {2, 3, 4, 5}, POISONS["nan_loss"], tmp_path)
    assert "train.max_nonfinite_steps" in str(err.value)
    assert int(module.nonfinite_total) == 3
    assert all(torch.isfinite(p).all() for p in module.parameters())


@pytest.mark.slow
def test_cli_reports_a_diverged_run_in_one_line(real_data_root, tmp_path):
    proc = run_cli(
        [
            "experiment=jsb/af_af",
            "debug=tiny",
            "runtime.threads=1",
            f"hydra.run.dir={tmp_path / 'run'}",
            "train.max_nonfinite_steps=2",
            "+callbacks.nan._target_=tests.scale_helpers.NaNGradients",
        ],
        subprocess_env(real_data_root),
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert lines[-1].startswith("latentflow-train: error: 2 consecutive steps had non-finite")
    assert "Traceback" not in proc.stderr
