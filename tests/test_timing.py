"""Where a run's time goes: ``timing.csv`` (``PhaseTimer``) and the run's own totals."""

from __future__ import annotations

import csv
import json

import pytest

from latentflow.run import train

from .helpers import TINY, compose_config

JSB = ["experiment=jsb/af_af", *TINY, "test=false", "data.limit_sequences=15"]


@pytest.mark.slow
def test_timing_rows_add_up_and_a_resume_appends(real_data_root, tmp_path):
    run = tmp_path / "run"
    root = f"data.root={real_data_root}"
    # 15 sequences, batches of 5: 3 batches an epoch, a step checkpoint after each step
    extra = [*JSB, root, "callbacks.step_checkpoint.every_n_train_steps=1"]
    train(compose_config("train", [*extra, "trainer.max_epochs=2"], run))
    rows = list(csv.DictReader((run / "timing.csv").open()))
    assert [r["epoch"] for r in rows] == ["start", "0", "1"]
    assert float(rows[0]["wall_s"]) > 0
    for row in rows[1:]:
        assert int(row["batches"]) == 3
        parts = sum(float(row[k]) for k in ("train_s", "val_s", "ckpt_s", "other_s"))
        # four parts and the wall, each written to the millisecond: at most 5 x 0.5 ms apart
        assert parts == pytest.approx(float(row["wall_s"]), abs=2.6e-3)
        assert float(row["train_s"]) > 0 and float(row["val_s"]) > 0
        assert float(row["ckpt_s"]) > 0  # the step checkpoints and last/best at the epoch end
    payload = json.loads((run / "metrics.json").read_text())
    assert payload["final_eval_time_s"] > 0

    # resumed for one more epoch: the same file, a new start-up row, then epoch 2
    train(compose_config("train", [*extra, "trainer.max_epochs=3", "ckpt_path=auto"], run))
    rows = list(csv.DictReader((run / "timing.csv").open()))
    assert [r["epoch"] for r in rows] == ["start", "0", "1", "start", "2"]


@pytest.mark.slow
def test_a_run_resumed_mid_epoch_writes_both_halves_of_the_cut_epoch(real_data_root, tmp_path):
    """Lightning skips on_train_epoch_start when it restarts inside an epoch: the rest of that
    epoch is still a row, and the two rows of the epoch add up to its batches."""
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    run = tmp_path / "run"
    extra = [
        *JSB,
        f"data.root={real_data_root}",
        "callbacks.step_checkpoint.every_n_train_steps=1",
    ]
    extra += ["trainer.max_epochs=2"]
    stop = ["+callbacks.sig._target_=tests.scale_helpers.SignalAtStep", "+callbacks.sig.step=4"]
    stop += ["+callbacks.sig.signal=SIGTERM"]
    with pytest.raises(SIGTERMException):
        train(compose_config("train", [*extra, *stop], run))
    train(compose_config("train", [*extra, "ckpt_path=auto"], run))
    rows = list(csv.DictReader((run / "timing.csv").open()))
    epoch_1 = [int(r["batches"]) for r in rows if r["epoch"] == "1"]
    assert len(epoch_1) == 2 and sum(epoch_1) == 3, rows
