"""latentflow-sweep: a study that prunes a lagging trial at its first report, two workers on one
study, a worker killed mid-trial whose trial is retried from its checkpoint, and the summary.
Every assertion reads the study's own records (trial states, reports, attributes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .scale_helpers import REPO, subprocess_env, wait_for

pytest.importorskip("optuna")
pytestmark = pytest.mark.slow
TINY = [
    "--config-dir",
    str(REPO / "tests" / "user_conf"),
    "experiment=jsb/af_af",
    "debug=tiny",
    "data.limit_sequences=30",  # 6 optimizer steps per epoch
    "runtime.threads=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "test=false",
]


def sweep_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "latentflow.sweep", *args]


def run_sweep(args: list[str], env: dict[str, str], timeout: float = 300) -> Any:
    return subprocess.run(
        sweep_command(*args), cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def trials_of(directory: Path) -> dict[int, Any]:
    from latentflow.sweep_report import load_study

    return {t.number: t for t in load_study(directory).get_trials()}


def test_a_stalling_learning_rate_is_pruned_at_its_first_report(real_data_root, tmp_path):
    sweep = tmp_path / "sweep"
    args = ["hparams_search=pruned_study", *TINY, "trainer.max_epochs=2", f"sweep.dir={sweep}"]
    proc = run_sweep(args, subprocess_env(real_data_root))
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = trials_of(sweep)
    states = {n: t.state.name for n, t in trials.items()}
    assert states == {0: "COMPLETE", 1: "COMPLETE", 2: "PRUNED", 3: "PRUNED"}
    for n in (0, 1):  # the good ones: a report per epoch, the best checkpoint's val/nll
        assert sorted(trials[n].intermediate_values) == [6, 12]
        metrics = json.loads((sweep / str(n) / "metrics.json").read_text())
        assert trials[n].value == metrics["val"]["nll"]
        assert (sweep / str(n) / "config.yaml").is_file()
    for n in (2, 3):  # the stalled ones: stopped at their first report, worse than the median
        assert trials[n].params == {"optimizer.lr": pytest.approx(1e-9)}
        assert list(trials[n].intermediate_values) == [6]
        good = max(trials[0].intermediate_values[6], trials[1].intermediate_values[6])
        assert trials[n].intermediate_values[6] > good
        assert not (sweep / str(n) / "metrics.json").exists()
        pruned = json.loads((sweep / str(n) / "pruned.json").read_text())
        assert pruned["reason"].startswith("pruned at step 6: val/nll=")
    summary = run_sweep(["--summary", str(sweep)], subprocess_env(real_data_root))
    assert summary.returncode == 0, summary.stderr[-2000:]
    assert "2 complete, 2 pruned, 0 failed" in summary.stdout
    assert "1. trial 0" in summary.stdout or "1. trial 1" in summary.stdout
    for name in ("history.png", "importance.png"):
        assert (sweep / name).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("storage", ["journal", "sqlite"])
def test_two_workers_finish_the_study_running_each_trial_once(real_data_root, tmp_path, storage):
    sweep = tmp_path / "sweep"
    args = ["hparams_search=shared_study", *TINY, f"sweep.storage={storage}", f"sweep.dir={sweep}"]
    env = subprocess_env(real_data_root)
    workers = [
        subprocess.Popen(
            sweep_command(*args),
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    errors = [w.communicate(timeout=300)[1] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [e[-2000:] for e in errors]
    trials = [t for t in trials_of(sweep).values() if not t.user_attrs.get("surplus")]
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]  # n_trials, each slot once
    for t in trials:  # the negative learning rate fails, the others complete
        assert t.state.name == ("FAIL" if t.params["optimizer.lr"] < 0 else "COMPLETE")
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both took trials
    failed = trials[1]  # enqueued second: optimizer.lr=-1.0
    assert failed.user_attrs["error"].startswith("optimizer.lr must be")
    record = json.loads((sweep / str(failed.number) / "failed.json").read_text())
    assert record["error"] == failed.user_attrs["error"] and "\n" not in record["error"]
    for t in trials:  # each run directory holds its own trial's run (the failed one: refused)
        assert (sweep / str(t.number) / "config.yaml").is_file() == (t.state.name == "COMPLETE")
        assert "Traceback" not in (sweep / str(t.number) / "train.log").read_text()


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["kill", "term"])
def test_a_killed_workers_trial_resumes_from_its_checkpoint(real_data_root, tmp_path, signum):
    """Two identical trials; the first worker is killed (SIGKILL) or preempted (SIGTERM: it
    hands its trial over itself, exit 143) in epoch 2 of trial 0. A new worker retries trial 0
    from its last.ckpt and runs trial 1: the resumed run ends exactly where the uninterrupted
    one does."""
    sweep, marker = tmp_path / "sweep", tmp_path / "paused"
    pause = [
        "+callbacks.pause._target_=tests.scale_helpers.PauseAtStep",
        "+callbacks.pause.step=7",
        f"+callbacks.pause.marker={marker}",
    ]
    args = ["hparams_search=resumed_study", *TINY, "trainer.max_epochs=3", *pause]
    args.append(f"sweep.dir={sweep}")
    env = subprocess_env(real_data_root)
    first = subprocess.Popen(
        sweep_command(*args),
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_for(marker, first)
    first.send_signal(signum)
    code = first.wait(timeout=60)
    assert code == (-9 if signum == signal.SIGKILL else 143), first.stdout.read()[-3000:]
    assert (sweep / "0" / "checkpoints" / "last.ckpt").is_file()
    again = run_sweep(args, env)
    assert again.returncode == 0, again.stderr[-3000:]
    trials = trials_of(sweep)
    assert {n: t.state.name for n, t in trials.items()} == {
        0: "FAIL",
        1: "COMPLETE",
        2: "COMPLETE",
    }
    retry = trials[2]
    assert retry.system_attrs["failed_trial"] == 0  # trial 0's retry, in trial 0's directory
    assert retry.intermediate_values[6] == trials[0].intermediate_values[6]  # inherited
    assert sorted(retry.intermediate_values) == sorted(trials[1].intermediate_values)
    assert retry.value == trials[1].value  # exact resume: the same end as the uninterrupted
    metrics = json.loads((sweep / "0" / "metrics.json").read_text())
    assert metrics["val"]["nll"] == retry.value and metrics["global_step"] == 18
    summary = run_sweep(["--summary", str(sweep)], env)
    assert "2 complete, 0 pruned, 0 failed, 1 retried" in summary.stdout, summary.stdout


def test_a_bad_setting_is_one_line_before_anything_is_written(tmp_path):
    sweep = tmp_path / "sweep"
    for bad, key in [
        ("sweep.n_trials=0", "sweep.n_trials must be"),
        ("+sweep.params.seed='interval(1e-3)'", "sweep.params.seed: "),
        ("sweep.storage=redis", "sweep.storage must be"),
        ("~hparams_search", "hparams_search: choose a study"),
    ]:
        dir_ = [] if bad.endswith("hparams_search") else [f"sweep.dir={sweep}"]
        proc = run_sweep(["debug=tiny", bad, *dir_], dict(os.environ))
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
        assert lines[0].startswith(f"latentflow-sweep: error: {key}"), lines[0]
        assert not sweep.exists()
