"""Sweeps survive a bad trial: under -m a trial that fails is recorded (its error and
overrides in failed.json) and the sweep goes on; a latentflow-sweep study counts it as FAIL."""

from __future__ import annotations

import json
import subprocess

import pytest

from .scale_helpers import REPO, run_cli, subprocess_env
from .test_sweep import sweep_command

TINY = ["debug=tiny", "runtime.threads=1", "trainer.enable_progress_bar=false", "test=false"]


@pytest.mark.slow
def test_a_failing_trial_does_not_end_a_basic_sweep(real_data_root, tmp_path):
    sweep = tmp_path / "sweep"
    args = [
        "-m",
        "experiment=jsb/af_scf",
        *TINY,
        "prior.latent_dim=1,4,6",
        f"hydra.sweep.dir={sweep}",
    ]
    proc = run_cli(args, subprocess_env(real_data_root))
    assert proc.returncode == 1  # reported at the end ...
    last = [ln for ln in proc.stderr.splitlines() if ln.strip()][-1]
    assert last.startswith("latentflow-train: error: the sweep ran every trial, but some failed")
    assert "Traceback" not in proc.stderr
    failed = json.loads((sweep / "0" / "failed.json").read_text())
    assert "must be >= 2" in failed["error"] and "prior.latent_dim=1" in failed["overrides"]
    for num in (1, 2):  # ... after every other trial ran to its end
        assert json.loads((sweep / str(num) / "metrics.json").read_text())["val"]["nll"] > 0


@pytest.mark.slow
def test_a_grid_study_with_a_failing_trial_completes(real_data_root, tmp_path):
    """latentflow-sweep on a grid (GridSampler): the failing trial is FAIL with its one-line
    error, the others complete; the same command again finds the study done and runs nothing."""
    pytest.importorskip("optuna")
    from latentflow.sweep_report import load_study

    sweep = tmp_path / "sweep"
    args = [
        "--config-dir",
        str(REPO / "tests" / "user_conf"),
        "hparams_search=failing_study",
        "experiment=jsb/af_af",
        *TINY,
        f"sweep.dir={sweep}",
    ]
    env = subprocess_env(real_data_root)
    proc = subprocess.run(sweep_command(*args), cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = load_study(sweep).get_trials()
    assert sorted(t.state.name for t in trials) == ["COMPLETE", "COMPLETE", "COMPLETE", "FAIL"]
    assert sorted(t.params["optimizer.lr"] for t in trials) == [-1.0, 0.001, 0.002, 0.005]
    (failed,) = sweep.glob("*/failed.json")
    assert "optimizer.lr=-1.0" in json.loads(failed.read_text())["overrides"]
    assert "Traceback" not in proc.stderr
    assert "3 complete, 0 pruned, 1 failed" in (sweep / "summary.txt").read_text()
    again = subprocess.run(sweep_command(*args), cwd=REPO, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(load_study(sweep).get_trials()) == 4
