"""End to end: latentflow-train on PTB and JSB (tiny), latentflow-eval reproduces the metrics,
and bad settings fail in one line before any work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from latentflow.run import evaluate, train

from .helpers import TINY, compose_config


def run_train(tmp_path: Path, data_root: Path, overrides: list[str]) -> tuple[Path, dict]:
    out = tmp_path / "run"
    cfg = compose_config("train", [*TINY, f"data.root={data_root}", *overrides], out)
    value, payload = train(cfg)
    assert value is not None and value == payload["val"]["nll"]
    return out, json.loads((out / "metrics.json").read_text())


def run_eval(tmp_path: Path, data_root: Path, ckpt: str) -> dict:
    cfg = compose_config(
        "eval",
        [f"ckpt_path={ckpt}", f"data.root={data_root}", "runtime.threads=1"],
        tmp_path / "eval",
    )
    evaluate(cfg)
    return json.loads((tmp_path / "eval" / "metrics.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize(
    "experiment,unit",
    [("ptb/af_af", "bpc"), ("jsb/af_af", "nats"), ("jsb/iaf_scf", "nats"), ("ptb/lstm", "bpc")],
)
def test_train_then_eval_reproduces_metrics(experiment, unit, tmp_path, real_data_root):
    out, metrics = run_train(tmp_path, real_data_root, [f"experiment={experiment}"])
    assert (out / "config.yaml").exists()
    assert (out / "checkpoints" / "last.ckpt").exists()
    best = metrics["best_checkpoint"]
    assert best and Path(best).exists()
    for split in ("val", "test"):
        m = metrics[split]
        assert m[f"nll_paper_{unit}"] > 0 and m[f"nll_cond_{unit}"] > 0
        assert f"nll_paper_{unit}_stderr" in m and m["num_sequences"] > 0
    assert metrics["paper"], "the paper's number travels with the run"
    again = run_eval(tmp_path, real_data_root, best)
    assert again["experiment"] == metrics["experiment"] and again["paper"] == metrics["paper"]
    for split in ("val", "test"):
        for key, value in metrics[split].items():
            assert again[split][key] == pytest.approx(value, rel=1e-9, abs=1e-12), (split, key)


def cli(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "latentflow.train", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.mark.slow
def test_cli_rejects_bad_settings_in_one_line(tmp_path):
    proc = cli("experiment=jsb/af_scf", "prior.latent_dim=1", f"paths.log_dir={tmp_path}")
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert lines[-1].startswith("latentflow-train: error: prior.flow"), proc.stderr
    assert "must be >= 2" in lines[-1]
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_cli_missing_data_is_a_clear_error(tmp_path):
    proc = cli(
        "experiment=jsb/af_af",
        "debug=tiny",
        f"data.root={tmp_path / 'nowhere'}",
        "data.download=false",
        f"paths.log_dir={tmp_path}",
    )
    assert proc.returncode == 2
    assert "latentflow-train: error:" in proc.stderr and "jsb_chorales" in proc.stderr
    assert "LATENTFLOW_DATA" in proc.stderr and "Traceback" not in proc.stderr
