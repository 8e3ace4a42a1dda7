"""Experiment tracking: W&B (offline, no account, no network), TensorBoard, CSV (the default)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from latentflow.lightning.callbacks import piano_roll_image
from latentflow.run import train
from latentflow.tracking import build_loggers, wandb_run_id

from .helpers import TINY, compose_config
from .scale_helpers import wandb_finished_records, wandb_history


@pytest.fixture
def no_wandb_account(tmp_path, monkeypatch):
    """No key, no ~/.netrc, no WANDB_MODE: what a fresh machine has."""
    for key in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(key, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(home / ".config" / "wandb"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(home / ".cache" / "wandb"))
    monkeypatch.setenv("WANDB_DATA_DIR", str(home / ".local" / "wandb"))
    return home


def test_the_default_logger_is_local_csv(tmp_path):
    cfg = compose_config("train", [], tmp_path)
    assert list(cfg.logger) == ["csv"]
    assert cfg.logger.csv._target_ == "pytorch_lightning.loggers.CSVLogger"


def test_wandb_is_offline_unless_a_key_is_configured(no_wandb_account, tmp_path, monkeypatch):
    monkeypatch.setattr("latentflow.tracking.wandb_reachable", lambda timeout=3.0: True)

    def offline() -> bool:
        cfg = compose_config("train", ["logger=wandb", "experiment=ptb/af_af"], tmp_path)
        (logger,) = build_loggers(cfg)  # WandbLogger starts no run until it is used
        assert logger._id == wandb_run_id(tmp_path)
        return logger._offline

    assert offline()
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert not offline()
    monkeypatch.setenv("WANDB_MODE", "offline")  # an explicit mode is left to wandb itself
    assert not offline()
    monkeypatch.delenv("WANDB_API_KEY")
    monkeypatch.delenv("WANDB_MODE")
    (no_wandb_account / ".netrc").write_text("machine api.wandb.ai login user password k\n")
    (no_wandb_account / ".netrc").chmod(0o600)
    assert not offline()  # `wandb login` wrote the key


def test_an_unreachable_wandb_server_falls_back_offline_in_seconds(
    no_wandb_account, tmp_path, monkeypatch, caplog
):
    """A key but no network (this machine): W&B itself would wait ~100 s, then raise."""
    import time

    from latentflow.config_checks import ConfigError

    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.invalid")  # never resolves (RFC 2606)
    cfg = compose_config("train", ["logger=wandb"], tmp_path)
    start = time.time()
    (logger,) = build_loggers(cfg)
    assert logger._offline and time.time() - start < 10
    assert "unreachable" in caplog.text
    cfg = compose_config("train", ["logger=wandb", "logger.wandb.on_unreachable=error"], tmp_path)
    with pytest.raises(ConfigError, match="unreachable"):
        build_loggers(cfg)
    monkeypatch.setenv("WANDB_MODE", "")  # empty = unset, not a pydantic traceback
    monkeypatch.delenv("WANDB_API_KEY")
    (logger,) = build_loggers(compose_config("train", ["logger=wandb"], tmp_path))
    assert logger._offline
    monkeypatch.setenv("WANDB_MODE", "sometimes")
    with pytest.raises(ConfigError, match="WANDB_MODE"):
        build_loggers(compose_config("train", ["logger=wandb"], tmp_path))


def test_local_loggers_fix_their_version_before_workers_are_spawned(tmp_path):
    (tmp_path / "csv" / "version_0").mkdir(parents=True)  # an earlier run in this directory
    cfg = compose_config("train", ["logger=[csv,tensorboard]"], tmp_path)
    csv, tensorboard = build_loggers(cfg)
    assert (csv._version, tensorboard._version) == (1, 0)  # chosen once, pickled to the ranks


def test_wandb_run_id_is_stable_per_run_directory(tmp_path):
    assert wandb_run_id(tmp_path / "a") == wandb_run_id(tmp_path / "a" / ".." / "a")
    assert wandb_run_id(tmp_path / "a") != wandb_run_id(tmp_path / "b")


@pytest.mark.slow
def test_wandb_offline_run_logs_config_metrics_and_text_samples(
    no_wandb_account, real_data_root, tmp_path
):
    import wandb

    out = tmp_path / "run"
    overrides = [*TINY, f"data.root={real_data_root}", "experiment=ptb/af_af", "logger=wandb"]
    cfg = compose_config("train", [*overrides, "test=false"], out)
    _, payload = train(cfg)
    assert wandb.run is None  # finished: the next job of a multirun starts its own run

    (run_dir,) = (out / "wandb").glob("offline-run-*")
    assert run_dir.name.endswith(wandb_run_id(out))
    records = wandb_finished_records(run_dir)
    kinds = [r.WhichOneof("record_type") for r in records]
    runs = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert len(runs) == 1, kinds
    run = runs[0]
    assert (run.project, run.run_group, run.job_type) == ("latentflow", "ptb/af_af", "train")
    assert list(run.tags) == ["ptb", "af_af"]
    config = {
        u.key: json.loads(u.value_json)
        for r in records
        if r.WhichOneof("record_type") == "config"
        for u in r.config.update
    }
    assert config["run_config"]["experiment_name"] == "ptb/af_af"
    assert config["run_config"]["model"] == config["components"]["model"]

    history = wandb_history(records)
    assert any("train/loss" in row for row in history)
    val = [row for row in history if "val/nll" in row]
    assert val and val[-1]["val/nll"] == pytest.approx(payload["val"]["nll"], rel=1e-12)
    assert val[-1]["val/num_sequences"] == payload["val"]["num_sequences"]

    samples = [row for row in history if "samples/text/_type" in row]
    assert len(samples) == 1  # one validation during fit (none from the final evaluations)
    assert samples[0]["samples/text/_type"] == "table-file"
    table = json.loads((run_dir / "files" / samples[0]["samples/text/path"]).read_text())
    assert table["columns"] == ["epoch", "length", "text"] and len(table["data"]) == 4
    for epoch, length, text in table["data"]:
        assert epoch == 0 and 0 < len(text.replace("<unk>", "?")) <= length


@pytest.mark.slow
def test_tensorboard_and_csv_log_metrics_and_piano_roll_samples(real_data_root, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    overrides = [*TINY, f"data.root={real_data_root}", "experiment=jsb/af_af", "test=false"]
    cfg = compose_config("train", [*overrides, "logger=[csv,tensorboard]"], out)
    _, payload = train(cfg)

    (version,) = (out / "tensorboard").iterdir()  # one run (an events file per trainer call)
    acc = EventAccumulator(str(version), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    assert "val/nll" in tags["scalars"] and "train/loss" in tags["scalars"]
    assert acc.Scalars("val/nll")[-1].value == pytest.approx(payload["val"]["nll"], rel=1e-6)
    assert {f"samples/piano_roll_{i}" for i in range(4)} <= set(tags["images"])

    (csv_file,) = (out / "csv").rglob("metrics.csv")
    header, *rows = csv_file.read_text().splitlines()
    column = header.split(",").index("val/nll")
    values = [float(r.split(",")[column]) for r in rows if r.split(",")[column]]
    assert values[-1] == pytest.approx(payload["val"]["nll"], rel=1e-12)


def test_piano_roll_image_puts_time_across_and_high_notes_on_top():
    roll = torch.zeros(5, 88)
    roll[0, 0] = 1  # lowest key, first step
    roll[4, 87] = 1  # highest key, last step
    image = piano_roll_image(roll)
    assert image.shape == (88, 5) and image.dtype == np.uint8
    assert image[87, 0] == 0 and image[0, 4] == 0  # black notes
    assert (image == 255).sum() == 88 * 5 - 2  # white elsewhere


def test_sample_logger_rejects_bad_settings():
    from latentflow.lightning.callbacks import SampleLogger

    with pytest.raises(ValueError, match="num_samples"):
        SampleLogger(num_samples=0)
