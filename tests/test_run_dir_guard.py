"""A run directory holds one run: a second run never writes into it, a fresh run never lands on
another run's files unless told to (``overwrite=true``), and the refusal comes before Hydra has
written anything (``latentflow.hydra_guard``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from latentflow.config_checks import ConfigError
from latentflow.rundir import RunLock, check_fresh_start, holds_run

REPO = Path(__file__).resolve().parents[1]
TINY = ["experiment=cpu/jsb/af_af", "debug=tiny", "runtime.threads=1", "test=false"]
TINY += ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


def train(run: Path, *extra: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "latentflow.train", *TINY, f"hydra.run.dir={run}", *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def snapshot(run: Path) -> dict[str, bytes]:
    """Every file of a run directory but its lock file, by relative path."""
    return {
        str(p.relative_to(run)): p.read_bytes()
        for p in sorted(run.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


@pytest.fixture
def env(real_data_root):
    return {**os.environ, "LATENTFLOW_DATA": str(real_data_root), "OMP_NUM_THREADS": "1"}


def test_holds_run_and_the_fresh_start_rule(tmp_path):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / "train.log").write_text("Hydra's own files are not a run\n")
    assert holds_run(run) == ""
    check_fresh_start(run, resuming=False, overwrite=False)
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert holds_run(run) == "started"
    check_fresh_start(run, resuming=True, overwrite=False)  # ckpt_path given: the user's word
    with pytest.raises(ConfigError, match=r"hydra.run.dir: .* started run: .*overwrite=true"):
        check_fresh_start(run, resuming=False, overwrite=False)
    (run / "metrics.json").write_text("{}")
    assert holds_run(run) == "finished"
    check_fresh_start(run, resuming=False, overwrite=True)
    assert holds_run(run) == "" and (run / "train.log").exists()


def test_the_guard_holds_the_lock_for_the_run_and_then_lets_it_go(tmp_path):
    from omegaconf import OmegaConf

    from latentflow.hydra_guard import RunDirGuard, holds_lock

    run = tmp_path / "run"
    config = OmegaConf.create({"hydra": {"run": {"dir": str(run)}}, "ckpt_path": None, "seed": 0})
    guard = RunDirGuard()
    guard.on_run_start(config)
    assert holds_lock(run)
    with pytest.raises(ConfigError, match="is in use"):  # any other opener is refused
        RunLock(run).__enter__()
    guard.on_run_end(config)
    assert not holds_lock(run)
    with RunLock(run):
        pass


@pytest.mark.slow
def test_a_fresh_run_on_a_finished_run_is_refused_then_replaced_with_overwrite(env, tmp_path):
    run = tmp_path / "run"
    first = train(run, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    before = snapshot(run)
    second = train(run, "seed=1", env=env)
    assert second.returncode == 2
    assert "Traceback" not in second.stderr
    assert second.stderr.strip().splitlines() == [
        f"latentflow-train: error: hydra.run.dir: {run} already holds a finished run: resume it "
        "with ckpt_path=auto, choose another directory, or replace it with overwrite=true"
    ]
    assert snapshot(run) == before  # .hydra/*.yaml, train.log, checkpoints, metrics: untouched
    third = train(run, "seed=1", "overwrite=true", env=env)
    assert third.returncode == 0, third.stderr[-3000:]
    assert "seed: 1" in (run / "config.yaml").read_text()
    assert len(list((run / "checkpoints").glob("best-*.ckpt"))) == 1  # the new run's only


@pytest.mark.slow
def test_a_second_run_on_a_directory_in_use_changes_none_of_its_files(env, tmp_path):
    run = tmp_path / "run"
    first = train(run, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    before = snapshot(run)
    with RunLock(run):  # another process holds the directory (this test process)
        second = train(run, "ckpt_path=auto", "trainer.max_epochs=2", env=env)
    assert second.returncode == 2
    assert "is in use" in second.stderr and "Traceback" not in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    assert snapshot(run) == before
