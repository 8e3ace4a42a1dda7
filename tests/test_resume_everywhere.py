"""A run killed at ANY point resumes to exactly the uninterrupted run's end, bit for bit
after every optimizer step (an epoch's last batch included), during
validation, and twice in one run. The run carries every piece of epoch-end bookkeeping: the
best checkpoint, a plateau LR schedule that decays, early stopping's counters, the KL schedule."""

from __future__ import annotations

import subprocess
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
)

# 3 epochs x 3 batches (15 sequences, batches of 5), a checkpoint after every step, LR x 0.5 after
# every validation but the first (the token count never improves), early stopping counting.
RUN = [
    "experiment=jsb/af_af",
    "debug=tiny",
    "data.limit_sequences=15",
    "runtime.threads=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "test=false",
    "trainer.max_epochs=3",
    "anneal.kind=epoch",
    "anneal.zero=1",
    "anneal.rampup=2",
    "callbacks=early_stopping",
    "callbacks.early_stopping.patience=10",
    "lr_schedule=plateau",
    "lr_schedule.monitor=val/num_tokens",
    "lr_schedule.patience=1",
    "lr_schedule.factor=0.5",
    "callbacks.step_checkpoint.every_n_train_steps=1",
]
STEPS = 9


@pytest.fixture(scope="module")
def reference(real_data_root, tmp_path_factory):
    return uninterrupted([*RUN, f"data.root={real_data_root}"], tmp_path_factory.mktemp("ref"))


def killed(run: Path, env: dict, **kill: int) -> None:
    """Start (or resume) the run in a subprocess that SIGKILLs itself at the given point."""
    args = [f"{k}={v}" for k, v in kill.items()]
    proc = subprocess.run(
        train_command(
            *RUN,
            f"hydra.run.dir={run}",
            "ckpt_path=auto",
            "+callbacks.kill._target_=tests.scale_helpers.KillAt",
            *(f"+callbacks.kill.{a}" for a in args),
        ),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -9, proc.stderr[-3000:]


def assert_bit_for_bit(run: Path, payload: dict, reference) -> None:
    assert_same_end(run, reference, STEPS, payload)
    ref_payload, ref = reference.payload, reference.last
    last = load_checkpoint_file(run / "checkpoints" / "last.ckpt")
    opt, ref_opt = last["optimizer_states"][0], ref["optimizer_states"][0]
    assert opt["param_groups"][0]["lr"] == ref_opt["param_groups"][0]["lr"] == 1e-3 * 0.5**2
    assert last["lr_schedule"] == ref["lr_schedule"]
    early = [k for k in last["callbacks"] if k.startswith("EarlyStoppingAfter")]
    assert last["callbacks"][early[0]] == ref["callbacks"][early[0]]
    assert (
        last["loops"]["fit_loop"]["epoch_progress"] == ref["loops"]["fit_loop"]["epoch_progress"]
    )
    best = sorted(p.name for p in (run / "checkpoints").glob("best-*.ckpt"))
    assert best == [Path(ref_payload["best_checkpoint"]).name]


@pytest.mark.slow
@pytest.mark.parametrize(
    "kill",
    [{"step": s} for s in range(1, STEPS)]
    + [{"validation_of_epoch": 0}, {"validation_of_epoch": 1}],
    ids=lambda k: "-".join(f"{a}{b}" for a, b in k.items()),
)
def test_a_kill_anywhere_resumes_bit_for_bit(kill, reference, real_data_root, tmp_path):
    env = subprocess_env(real_data_root)
    killed(tmp_path, env, **kill)
    _, payload = train(
        compose_config("train", [*RUN, "ckpt_path=auto", f"data.root={real_data_root}"], tmp_path)
    )
    assert_bit_for_bit(tmp_path, payload, reference)


@pytest.mark.slow
def test_two_kills_in_one_run_at_epoch_ends(reference, real_data_root, tmp_path):
    """The reported failure: killed after an epoch's last step, resumed, killed again after the
    next epoch's last step, resumed to the end."""
    env = subprocess_env(real_data_root)
    killed(tmp_path, env, step=3)
    killed(tmp_path, env, step=6)
    _, payload = train(
        compose_config("train", [*RUN, "ckpt_path=auto", f"data.root={real_data_root}"], tmp_path)
    )
    assert_bit_for_bit(tmp_path, payload, reference)


@pytest.mark.slow
@pytest.mark.parametrize(
    "signal,epoch,batch",
    [("SIGTERM", 0, 0), ("SIGTERM", 1, 1), ("SIGTERM", 1, 2), ("SIGTERM", 2, 2)]
    + [("SIGUSR2", 0, 2), ("SIGUSR2", 1, 0)],
)
def test_a_signal_while_validating_resumes_bit_for_bit(
    signal, epoch, batch, reference, real_data_root, tmp_path
):
    """A pre-emption that lands in validation, its last batch included (Lightning then raises
    at the very end of the epoch, its epoch counter already moved on), or Slurm's requeue
    signal during validation: the position saved is the position trained, and the resumed run
    ends where the uninterrupted one does."""
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    data = f"data.root={real_data_root}"
    sig = ["+callbacks.sig._target_=tests.scale_helpers.SignalInValidation"]
    sig += [f"+callbacks.sig.epoch={epoch}", f"+callbacks.sig.batch={batch}"]
    sig += [f"+callbacks.sig.signal={signal}"]
    # SIGTERM: Lightning stops; SIGUSR2 (Slurm's requeue warning): the next step checkpoints
    stopped = SIGTERMException if signal == "SIGTERM" else SystemExit
    with pytest.raises(stopped):
        train(compose_config("train", [*RUN, data, *sig], tmp_path))
    _, payload = train(compose_config("train", [*RUN, "ckpt_path=auto", data], tmp_path))
    assert_bit_for_bit(tmp_path, payload, reference)


@pytest.mark.slow
def test_an_early_stopped_run_is_left_unchanged_by_auto(real_data_root, tmp_path):
    """Stopped early at an epoch without a new best: last.ckpt holds the final weights, so
    ckpt_path=auto finds the run finished and writes nothing."""
    config = [*RUN, f"data.root={real_data_root}", "trainer.max_epochs=6"]
    config += ["monitor=val/num_tokens", "lr_schedule.monitor=val/nll"]  # never a new best
    config += ["callbacks.early_stopping.patience=1"]
    _, payload = train(compose_config("train", config, tmp_path))
    assert payload["stop_reason"] == "early_stopping" and payload["epochs"] < 6
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert load_checkpoint_file(last)["global_step"] == payload["global_step"]
    files = {p: p.read_bytes() for p in (tmp_path / "checkpoints").iterdir()}
    files[tmp_path / "metrics.json"] = (tmp_path / "metrics.json").read_bytes()
    _, again = train(compose_config("train", [*config, "ckpt_path=auto"], tmp_path))
    assert again["already_finished"].startswith("early stopping")
    assert {p: p.read_bytes() for p in files} == files
