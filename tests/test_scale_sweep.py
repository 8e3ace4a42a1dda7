"""Hydra multirun with the basic launcher: every job runs and returns the monitored metric,
which is what a sweeper (Optuna, Nevergrad, ...) optimises."""

from __future__ import annotations

import json
import math

import pytest

from .scale_helpers import run_cli, subprocess_env


@pytest.mark.slow
def test_prior_by_transform_sweep_returns_each_jobs_metric(real_data_root, tmp_path):
    sweep, returns = tmp_path / "sweep", tmp_path / "returns"
    args = [
        "-m",
        "prior=af_af,af_scf,iaf_scf",
        "transform=affine,nlsq",
        "debug=tiny",
        "runtime.threads=1",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "test=false",
        f"hydra.sweep.dir={sweep}",
        "+hydra.callbacks.record._target_=tests.scale_helpers.RecordReturn",
        f"+hydra.callbacks.record.dir={returns}",
    ]
    proc = run_cli(args, subprocess_env(real_data_root))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (sweep / "multirun.yaml").exists()
    jobs = sorted(returns.glob("*.json"), key=lambda p: int(p.stem))
    assert len(jobs) == 6
    seen = set()
    for path in jobs:
        record = json.loads(path.read_text())
        metrics = json.loads((sweep / path.stem / "metrics.json").read_text())
        prior = next(o.split("=")[1] for o in record["overrides"] if o.startswith("prior="))
        transform = next(
            o.split("=")[1] for o in record["overrides"] if o.startswith("transform=")
        )
        seen.add((prior, transform))
        assert record["status"] == "COMPLETED"
        time_flow = {"af": "AFTimePrior", "iaf": "IAFTimePrior"}[prior.split("_")[0]]
        assert metrics["prior"]["_target_"] == f"latentflow.models.{time_flow}"
        transform_class = {"affine": "Affine", "nlsq": "NLSq"}[transform]
        assert metrics["prior"]["flow"]["transform"]["_target_"].endswith(transform_class)
        # The job's return value is the monitored metric (val/nll) of its run.
        assert record["value"] == metrics["val"]["nll"] and math.isfinite(record["value"])
    assert seen == {(p, t) for p in ("af_af", "af_scf", "iaf_scf") for t in ("affine", "nlsq")}
