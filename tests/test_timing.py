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
        assert parts == pytest.approx(float(row["wall_s"]), abs=2e-3)
        assert float(row["train_s"]) > 0 and float(row["val_s"]) > 0
        assert float(row["ckpt_s"]) > 0  # the step checkpoints and last/best at the epoch end
    payload = json.loads((run / "metrics.json").read_text())
    assert payload["final_eval_time_s"] > 0

    # resumed for one more epoch: the same file, a new start-up row, then epoch 2
    train(compose_config("train", [*extra, "trainer.max_epochs=3", "ckpt_path=auto"], run))
    rows = list(csv.DictReader((run / "timing.csv").open()))
    assert [r["epoch"] for r in rows] == ["start", "0", "1", "start", "2"]
