"""Kill a run mid-epoch (SIGTERM, SIGKILL), resume it, and end exactly where an uninterrupted
run with the same seed ends; checkpoints are written atomically."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import SIGTERMException

from latentflow.assembly import build_plugins
from latentflow.lightning.callbacks import POSITION_KEY, PreemptionCheckpoint
from latentflow.lightning.checkpoint_io import (
    AtomicCheckpointIO,
    atomic_torch_save,
    load_checkpoint_file,
)
from latentflow.lightning.distributed import ddp_strategy
from latentflow.run import train

from .helpers import compose_config
from .scale_helpers import (
    REPO,
    RESUMABLE,
    SignalAtStep,
    assert_same_end,
    read_steps,
    same_tensors,
    subprocess_env,
    train_command,
    uninterrupted,
    wait_for,
)


def record(trace: Path) -> list[str]:
    return [
        "+callbacks.record._target_=tests.scale_helpers.RecordSteps",
        f"+callbacks.record.path={trace}",
    ]


@pytest.fixture(scope="module")
def reference(real_data_root, tmp_path_factory):
    """RESUMABLE, uninterrupted: 3 epochs x 5 batches, in this process."""
    root = tmp_path_factory.mktemp("reference")
    trace = root / "steps.jsonl"
    overrides = [*RESUMABLE, *record(trace), f"data.root={real_data_root}"]
    return uninterrupted(overrides, root / "run", trace)


def interrupt(
    run: Path, trace: Path, step: int, signum: int, env: dict, extra=()
) -> tuple[int, str]:
    """Start RESUMABLE in a subprocess, pause it at ``step``, send ``signum``; its exit code
    and stderr."""
    marker = run.parent / "paused"
    args = [
        *RESUMABLE,
        *record(trace),
        f"hydra.run.dir={run}",
        "+callbacks.pause._target_=tests.scale_helpers.PauseAtStep",
        f"+callbacks.pause.step={step}",
        f"+callbacks.pause.marker={marker}",
        *extra,
    ]
    proc = subprocess.Popen(
        train_command(*args),
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        pid = int(wait_for(marker, proc))
        os.kill(pid, signum)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, stderr


def resume(run: Path, trace: Path, data_root: Path) -> dict:
    overrides = [*RESUMABLE, *record(trace), "ckpt_path=auto", f"data.root={data_root}"]
    cfg = compose_config("train", overrides, run)
    _, payload = train(cfg)
    return payload


@pytest.mark.slow
def test_sigterm_mid_epoch_then_resume_matches_an_uninterrupted_run(
    reference, real_data_root, tmp_path
):
    run, trace = tmp_path / "run", tmp_path / "steps.jsonl"
    code, stderr = interrupt(run, trace, 6, signal.SIGTERM, subprocess_env(real_data_root))
    # Lightning finishes the batch, PreemptionCheckpoint writes last.ckpt, the CLI says how to
    # go on and exits 128 + SIGTERM.
    assert code == 143, stderr[-2000:]
    assert "stopped by SIGTERM; resume with ckpt_path=" in stderr
    ckpt = load_checkpoint_file(run / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 7 and ckpt[POSITION_KEY] == {"epoch": 1, "batches": 2}
    before = read_steps(trace)
    assert len(before) == 7
    first_part = ckpt["callbacks"]["Timer"]["time_elapsed"]["train"]
    assert first_part > 0

    payload = resume(run, trace, real_data_root)
    # No batch lost or repeated; the KL weight, counters and data order continue exactly.
    assert read_steps(trace) == reference.steps
    assert_same_end(run, reference, 15, payload)
    # The reported training time covers both processes, not only the resumed one.
    both_parts = load_checkpoint_file(run / "checkpoints" / "last.ckpt")["callbacks"]["Timer"][
        "time_elapsed"
    ]
    assert payload["train_time_s"] >= both_parts["train"] > first_part


@pytest.mark.slow
def test_sigkill_mid_epoch_resumes_from_the_step_checkpoint(reference, real_data_root, tmp_path):
    run, trace = tmp_path / "run", tmp_path / "steps.jsonl"
    every_2 = ["callbacks.step_checkpoint.every_n_train_steps=2"]
    code, _ = interrupt(run, trace, 9, signal.SIGKILL, subprocess_env(real_data_root), every_2)
    assert code == -signal.SIGKILL
    ckpt = load_checkpoint_file(
        run / "checkpoints" / "last.ckpt"
    )  # written at step 8, epoch 1 batch 3
    assert ckpt["global_step"] == 8 and ckpt[POSITION_KEY] == {"epoch": 1, "batches": 3}
    killed = read_steps(trace)
    assert len(killed) == 9  # step 9 had been trained but not checkpointed

    trace.unlink()
    payload = resume(run, trace, real_data_root)
    assert read_steps(trace) == reference.steps[8:]  # it is trained again, identically
    assert killed == reference.steps[:9]
    assert_same_end(run, reference, 15, payload)


def test_requeue_signal_checkpoints_at_the_batch_boundary_then_hands_over(
    real_data_root, tmp_path
):
    """SIGUSR2 (Slurm's warning, via submitit): the batch finishes, last.ckpt is written, then
    the handler installed before (submitit's, which requeues) runs and the run stops."""
    calls = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: calls.append(signum))
    try:
        overrides = [*RESUMABLE, "trainer.max_epochs=1", f"data.root={real_data_root}"]
        cfg = compose_config("train", overrides, tmp_path / "run")
        with pytest.raises(SystemExit) as exit_info:
            train_with(cfg, SignalAtStep(2, "SIGUSR2"))
        assert calls == [signal.SIGUSR2]
        assert exit_info.value.code == 128 + signal.SIGUSR2
        ckpt = load_checkpoint_file(tmp_path / "run" / "checkpoints" / "last.ckpt")
        assert ckpt["global_step"] == 3 and ckpt[POSITION_KEY] == {"epoch": 0, "batches": 3}
        assert signal.getsignal(signal.SIGUSR2) is not None  # restored
    finally:
        signal.signal(signal.SIGUSR2, previous)


def train_with(cfg, extra_callback):
    """train(cfg) with one more callback (an in-process signal source)."""
    return train(cfg, extra_callbacks=[extra_callback])


@pytest.mark.slow
def test_sigterm_inside_an_accumulated_step_waits_for_the_step(real_data_root, tmp_path):
    """With gradient accumulation a checkpoint between the batches of one optimizer step would
    lose their gradients: the stop is held until the step is complete, and the resumed run
    still ends exactly where the uninterrupted one does."""
    accumulate = [
        *RESUMABLE,
        "trainer.accumulate_grad_batches=2",
        "data.batch_size=3",  # 8 batches per epoch, 4 optimizer steps
        f"data.root={real_data_root}",
    ]
    _, ref = train(compose_config("train", accumulate, tmp_path / "ref"))
    ref_last = load_checkpoint_file(tmp_path / "ref" / "checkpoints" / "last.ckpt")

    run = tmp_path / "run"
    # SIGTERM during the first of the two batches of step 5 (epoch 1, batches 2-3).
    with pytest.raises(SIGTERMException):
        train_with(compose_config("train", accumulate, run), SignalAtStep(5, "SIGTERM"))
    ckpt = load_checkpoint_file(run / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 6 and ckpt[POSITION_KEY] == {"epoch": 1, "batches": 4}

    _, payload = train(compose_config("train", [*accumulate, "ckpt_path=auto"], run))
    assert payload["val"] == ref["val"] and payload["global_step"] == ref["global_step"] == 12
    last = load_checkpoint_file(run / "checkpoints" / "last.ckpt")
    assert not same_tensors(last["state_dict"], ref_last["state_dict"])


def test_preemption_checkpoint_ignores_other_exceptions(tmp_path):
    callback = PreemptionCheckpoint(str(tmp_path))
    callback.on_exception(None, None, RuntimeError("a bug"))  # type: ignore[arg-type]
    assert not (tmp_path / "last.ckpt").exists()


# -- atomic checkpoint files ----------------------------------------------------------------------
def test_atomic_save_keeps_the_previous_file_when_a_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"step": 1, "w": torch.arange(10)}, path)

    def crash(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        AtomicCheckpointIO().save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint_file(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary left


@pytest.mark.slow
def test_atomic_save_survives_sigkill_while_writing(tmp_path):
    """A process rewriting last.ckpt in a loop is SIGKILLed at some moment: the file loads."""
    path = tmp_path / "last.ckpt"
    script = textwrap.dedent(
        f"""
        import torch
        from latentflow.lightning.checkpoint_io import atomic_torch_save
        big = torch.randn(2_000_000)  # 8 MB: a kill lands inside a write most of the time
        step = 0
        while True:
            step += 1
            w = big + step
            atomic_torch_save({{"step": step, "w": w, "sum": w.sum()}}, {str(path)!r})
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for delay in (0.05, 0.2):  # plain torch.save: corrupt in 4 of 5 such kills (measured)
        proc = subprocess.Popen([sys.executable, "-c", script], env=env)
        try:
            deadline = time.time() + 60
            while not path.exists() and time.time() < deadline:
                time.sleep(0.02)
            time.sleep(delay)
        finally:
            proc.kill()
            proc.wait()
        ckpt = load_checkpoint_file(
            path
        )  # readable, and whole: the stored sum matches the stored tensor
        assert ckpt["w"].numel() == 2_000_000 and ckpt["step"] >= 1
        assert torch.equal(ckpt["w"].sum(), ckpt["sum"])


def test_train_plugs_in_the_atomic_checkpoint_io(tmp_path):
    for strategy in ("auto", ddp_strategy("spawn")):
        trainer = pl.Trainer(
            accelerator="cpu",
            devices=1 if strategy == "auto" else 2,
            strategy=strategy,
            plugins=build_plugins(),
            logger=False,
            default_root_dir=tmp_path,
        )
        assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
