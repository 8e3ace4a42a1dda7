"""The real Slurm scheduler: sbatch, srun, squeue, scancel and scontrol of a
single-node cluster on this machine (tests/slurm/start_local_slurm.sh; CI starts it), driven
through ``hydra/launcher=slurm`` (hydra-submitit-launcher) as a user would.

Skipped with the reason where Slurm cannot run (no slurm-wlm, not root); CI sets
LATENTFLOW_REQUIRE_SLURM=1, which turns the skip into a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from latentflow.lightning.checkpoint_io import load_checkpoint_file
from latentflow.run import train

from .helpers import compose_config
from .scale_helpers import (
    REPO,
    assert_same_end,
    subprocess_env,
    train_command,
    uninterrupted,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.slurm]
START = REPO / "tests" / "slurm" / "start_local_slurm.sh"
# A tiny JSB run: 30 sequences in batches of 5 (6 steps per epoch), 4 epochs, one thread.
RUN = [
    "experiment=jsb/af_af",
    "debug=tiny",
    "data.limit_sequences=30",
    "trainer.max_epochs=4",
    "runtime.threads=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "test=false",
]
LAUNCHER = [
    "hydra/launcher=slurm",
    "hydra.launcher.gpus_per_node=null",
    "hydra.launcher.partition=debug",
    "hydra.launcher.cpus_per_task=1",
]


@pytest.fixture(scope="module")
def slurm():
    """A running local Slurm: started if this machine can (root, slurm-wlm), else a skip."""
    if shutil.which("sbatch") is None and not os.environ.get("LATENTFLOW_REQUIRE_SLURM"):
        pytest.skip("Slurm is not installed here (apt-get install slurm-wlm munge; see .ci/run)")
    proc = subprocess.run(["bash", str(START), "start"], capture_output=True, text=True)
    if proc.returncode != 0:
        if os.environ.get("LATENTFLOW_REQUIRE_SLURM"):
            pytest.fail(f"local Slurm did not start: {proc.stderr}")
        pytest.skip(f"local Slurm cannot start here: {proc.stderr.strip()}")
    yield


class Releaser:
    """Release requeued jobs at once (Slurm holds them ~2 minutes by their BeginTime)."""

    def __init__(self) -> None:
        self.stop, self.released = threading.Event(), []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.wait(1.0):
            out = subprocess.run(
                ["squeue", "-h", "-t", "PD", "-o", "%i %r"], capture_output=True, text=True
            ).stdout
            for line in out.splitlines():
                job, _, reason = line.partition(" ")
                if reason.strip() == "BeginTime":
                    subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"])
                    self.released.append(job)

    def __enter__(self) -> Releaser:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def sweep(tmp: Path, data_root: Path, *args: str) -> subprocess.Popen:
    """``latentflow-train -m hydra/launcher=slurm ...`` (the repository as cwd, so the test
    callbacks import in the jobs)."""
    cmd = train_command("-m", *LAUNCHER, f"hydra.sweep.dir={tmp / 'sweep'}", *args)
    return subprocess.Popen(
        cmd,
        cwd=REPO,
        env=subprocess_env(data_root, PYTHONPATH=str(REPO)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 600) -> str:
    """The sweep's output once it ends; past ``timeout`` a failure that shows the queue and
    the jobs' own logs (where a hung sweep's reason is), not a bare TimeoutExpired."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as timed_out:
        queue = subprocess.run(["squeue"], capture_output=True, text=True).stdout
        (sweep_dir,) = [a.split("=", 1)[1] for a in proc.args if a.startswith("hydra.sweep.dir=")]
        logs = job_logs(Path(sweep_dir).parent)
        out = (timed_out.output or b"").decode(errors="replace")
        pytest.fail(
            f"sweep still running after {timeout} s\n{queue}\n{out[-2000:]}\n{logs[-4000:]}"
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            subprocess.run(["scancel", "--user=root"])
    assert proc.returncode == 0, out[-4000:]
    return out


REQUEUED = "[submitit][INFO] - Requeued job"  # (submitit prints each line twice: one form)


def job_logs(tmp: Path) -> str:
    return "".join(p.read_text() for p in sorted((tmp / "sweep").glob(".submitit/*/*_log.*")))


def only_job() -> str:
    out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout
    jobs = out.split()
    assert len(jobs) == 1, out
    return jobs[0]


@pytest.fixture(scope="module")
def reference(real_data_root, tmp_path_factory):
    """RUN uninterrupted, in this process."""
    return uninterrupted([*RUN, f"data.root={real_data_root}"], tmp_path_factory.mktemp("ref"))


def test_a_two_task_ddp_job_end_to_end(slurm, real_data_root, tmp_path):
    """2 srun tasks are Lightning's 2 ranks (gloo), one metrics.json, the srun world seen."""
    proc = sweep(tmp_path, real_data_root, *RUN, "trainer=ddp_cpu", "trainer.devices=2")
    finish(proc)
    metrics = json.loads((tmp_path / "sweep" / "0" / "metrics.json").read_text())
    assert metrics["global_step"] == 12  # 6 batches per epoch shared by 2 ranks, 4 epochs
    logs = job_logs(tmp_path)
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in logs
    (script,) = (tmp_path / "sweep").glob(".submitit/*/*_submission.sh")
    assert "#SBATCH --ntasks-per-node=2" in script.read_text()


def test_time_limit_requeues_twice_and_ends_exactly(slurm, reference, real_data_root, tmp_path):
    """A 2-minute limit, Slurm's own SIGUSR2 75 s before it: checkpoint, requeue, resume --
    twice -- and the end is bit for bit the uninterrupted run's. The first two runs of the job
    make 3 steps each and then wait for the signal (tests.scale_helpers.WaitForTimeLimit), so
    a slow start-up cannot turn the test into a race; the third run finishes."""
    wait = [
        "+callbacks.wait._target_=tests.scale_helpers.WaitForTimeLimit",
        "+callbacks.wait.steps=3",
    ]
    args = [*RUN, *wait, "hydra.launcher.timeout_min=2", "hydra.launcher.signal_delay_s=75"]
    with Releaser() as releaser:
        finish(sweep(tmp_path, real_data_root, *args), timeout=900)
    logs = job_logs(tmp_path)
    assert logs.count(REQUEUED) == 2 and len(releaser.released) == 2, logs[-3000:]
    assert logs.count("[latentflow.lightning.callbacks][INFO] - resuming epoch") == 2, logs[-3000:]
    assert_same_end(tmp_path / "sweep" / "0", reference, 24)


def test_a_preemption_at_an_epochs_last_batch_resumes_exactly(
    slurm, reference, real_data_root, tmp_path
):
    """The reported failure: the signal arrives during the last batch of epoch 1; the
    checkpoint waits for that epoch's validation, the requeued job resumes and ends exactly."""
    marker = tmp_path / "paused"
    pause = [
        "+callbacks.pause._target_=tests.scale_helpers.PauseAtStep",
        "+callbacks.pause.step=11",  # the start of epoch 1's last batch (steps 6..11)
        f"+callbacks.pause.marker={marker}",
    ]
    with Releaser():
        proc = sweep(tmp_path, real_data_root, *RUN, *pause)
        wait_for(marker, proc, timeout=300)
        subprocess.run(["scancel", "--signal=USR2", only_job()], check=True)
        finish(proc)
    logs = job_logs(tmp_path)
    assert logs.count(REQUEUED) == 1 and "resuming epoch 2 at batch 1" in logs, logs[-3000:]
    assert_same_end(tmp_path / "sweep" / "0", reference, 24)


def test_a_requeue_signal_while_validating_resumes_exactly(
    slurm, reference, real_data_root, tmp_path
):
    """scancel --signal=USR2 while the job validates epoch 1: validation finishes, the next
    optimizer step is the checkpoint, the requeued job resumes there and ends exactly."""
    marker = tmp_path / "paused"
    pause = [
        "+callbacks.pause._target_=tests.scale_helpers.PauseInValidation",
        "+callbacks.pause.epoch=1",
        "+callbacks.pause.batch=0",
        f"+callbacks.pause.marker={marker}",
    ]
    with Releaser():
        proc = sweep(tmp_path, real_data_root, *RUN, *pause)
        wait_for(marker, proc, timeout=300)
        subprocess.run(["scancel", "--signal=USR2", only_job()], check=True)
        finish(proc)
    logs = job_logs(tmp_path)
    assert logs.count(REQUEUED) == 1 and "resuming epoch 2 at batch 1" in logs, logs[-3000:]
    assert_same_end(tmp_path / "sweep" / "0", reference, 24)


def test_scancel_leaves_a_resumable_last_ckpt(slurm, reference, real_data_root, tmp_path):
    marker = tmp_path / "paused"
    pause = [
        "+callbacks.pause._target_=tests.scale_helpers.PauseAtStep",
        "+callbacks.pause.step=8",
        f"+callbacks.pause.marker={marker}",
    ]
    proc = sweep(tmp_path, real_data_root, *RUN, *pause)
    try:
        wait_for(marker, proc, timeout=300)
        job = only_job()
        subprocess.run(["scancel", job], check=True)  # SIGTERM to the job's tasks
        deadline = time.time() + 120
        while (
            job
            in subprocess.run(
                ["squeue", "-h", "-o", "%i"], capture_output=True, text=True
            ).stdout.split()
        ):
            assert time.time() < deadline, "the cancelled job did not end"
            time.sleep(1)
    finally:
        # The launcher would wait for a result a cancelled job never writes (and this cluster
        # keeps no accounting for it to ask): stop it, as a user stops a cancelled sweep.
        proc.kill()
        proc.wait()
    run = tmp_path / "sweep" / "0"
    last = load_checkpoint_file(run / "checkpoints" / "last.ckpt")
    assert last["global_step"] == 9
    cfg = compose_config("train", [*RUN, "ckpt_path=auto", f"data.root={real_data_root}"], run)
    train(cfg)
    assert_same_end(run, reference, 24)


def test_an_array_of_three_sweep_points(slurm, real_data_root, tmp_path):
    proc = sweep(
        tmp_path, real_data_root, *RUN, "trainer.max_epochs=1", "transform=affine,nlsq,spline"
    )
    out = finish(proc)
    (script,) = (tmp_path / "sweep").glob(".submitit/*/*_submission.sh")
    assert "#SBATCH --array=0-2" in script.read_text()
    for num, name in enumerate(("Affine", "NLSq", "RationalQuadraticSpline")):
        metrics = json.loads((tmp_path / "sweep" / str(num) / "metrics.json").read_text())
        assert metrics["prior"]["flow"]["transform"]["_target_"].endswith(name), out[-2000:]
        assert metrics["epochs"] == 1


def test_a_study_as_a_slurm_array_of_two_tasks(slurm, real_data_root, tmp_path):
    """latentflow-sweep as `sbatch --array=0-1`: two tasks, one journal study of 3 trials;
    each trial runs once, in a task of the array, and the failing one is recorded."""
    import shlex
    import sys

    from latentflow.sweep_report import load_study

    sweep = tmp_path / "sweep"
    user_conf = str(REPO / "tests" / "user_conf")
    command = [
        sys.executable, "-m", "latentflow.sweep", "--config-dir", user_conf,
        "hparams_search=shared_study", "sweep.n_trials=3", *RUN, f"sweep.dir={sweep}",
    ]  # fmt: skip
    sbatch = [
        "sbatch", "--parsable", "--wait", "--array=0-1", "--partition=debug",
        "--cpus-per-task=1", f"--chdir={REPO}", f"--output={tmp_path}/task-%a.out",
        "--wrap", " ".join(shlex.quote(part) for part in command),
    ]  # fmt: skip
    proc = subprocess.run(
        sbatch, env=subprocess_env(real_data_root), capture_output=True, text=True, timeout=600
    )
    logs = "".join(p.read_text()[-1500:] for p in sorted(tmp_path.glob("task-*.out")))
    assert proc.returncode == 0, proc.stderr + logs
    trials = [t for t in load_study(sweep).get_trials() if not t.user_attrs.get("surplus")]
    assert sorted(t.number for t in trials) == [0, 1, 2], logs
    for t in trials:
        assert t.state.name == ("FAIL" if t.params["optimizer.lr"] < 0 else "COMPLETE")
        assert t.user_attrs["worker"].endswith(("(array task 0)", "(array task 1)"))
