"""Hostile inputs that used to end in a traceback, a slow refusal or a silent wrong result: each
is now one line naming the key, raised before the checkpoint, the data or the model is read.
One table per tool; the CLI is exercised for a sample of it (exit 2, one line, nothing written)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from latentflow.config_checks import (
    ConfigError,
    validate_eval_config,
    validate_sample_config,
    validate_train_config,
)

from .helpers import TINY, compose_config, run_module

TRAIN = [
    (["seed=-1"], r"seed must be an integer in \[0, 4294967295\], got -1"),
    (["seed=99999999999999999999"], "seed must be an integer in"),
    (["anneal.zero=-5"], "anneal.zero must be an integer >= 0, got -5"),
    (["anneal.floor=2"], r"anneal.floor must be a finite number in \[0.0, 1.0\], got 2"),
    (["runtime.threads=0"], "runtime.threads must be an integer >= 1, got 0"),
    (["trainer.accumulate_grad_batches=0"], "trainer.accumulate_grad_batches must be"),
    (["trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val must be a finite number"),
    (["monitor=val/xyz"], "monitor must be val/<metric>"),
    (["trainer.limit_val_batches=0"], "trainer.limit_val_batches=0 turns validation off"),
    (["train.max_nonfinite_steps=0"], "train.max_nonfinite_steps must be an integer >= 1"),
]
EVAL = [
    (["eval.chunk_size=0"], "eval.chunk_size must be an integer >= 1, got 0"),
    (["splits=[]"], r"splits must be a non-empty subset of \[val, test\]"),
    (["splits=[train]"], "splits must be a non-empty subset"),
]
SAMPLE = [
    (["length=2.5"], "length must be an integer >= 1, got 2.5"),
    (["temperature=inf"], "temperature must be a finite number in"),
    (["temperature=0"], "temperature must be a finite number in"),
    (["device=tpu9"], "device must be cpu, cuda or cuda:N, got 'tpu9'"),
    (["midi.step_beats=0"], "midi.step_beats must be a finite number in"),
    (["midi.tempo_bpm=0"], "midi.tempo_bpm must be a finite number in"),
    (["midi.velocity=300"], r"midi.velocity must be an integer in \[1, 127\], got 300"),
    (["midi.program=200"], r"midi.program must be an integer in \[0, 127\], got 200"),
    (["audio=on", "audio.program=-1"], r"audio.program must be an integer in \[0, 127\]"),
]
if not torch.cuda.is_available():
    EVAL.append((["trainer.accelerator=gpu"], "trainer.accelerator=gpu but this machine"))


def refused(check, tool: str, overrides: list[str], message: str, tmp_path: Path) -> None:
    cfg = compose_config(tool, ["ckpt_path=x.ckpt", *overrides] if tool != "train" else overrides)
    with pytest.raises(ConfigError, match=message) as err:
        check(cfg)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("overrides,message", TRAIN, ids=lambda v: str(v)[:40])
def test_train_refuses(overrides, message, tmp_path):
    refused(validate_train_config, "train", overrides, message, tmp_path)


@pytest.mark.parametrize("overrides,message", EVAL, ids=lambda v: str(v)[:40])
def test_eval_refuses(overrides, message, tmp_path):
    refused(validate_eval_config, "eval", overrides, message, tmp_path)


@pytest.mark.parametrize("overrides,message", SAMPLE, ids=lambda v: str(v)[:40])
def test_sample_refuses(overrides, message, tmp_path):
    refused(validate_sample_config, "sample", overrides, message, tmp_path)


def test_the_defaults_pass_every_check():
    validate_train_config(compose_config("train", []))
    validate_eval_config(compose_config("eval", ["ckpt_path=x.ckpt"]))
    validate_sample_config(compose_config("sample", ["ckpt_path=x.ckpt"]))


def test_a_transpose_beyond_the_keyboard_is_refused(tmp_path):
    from latentflow.data.download import DataError
    from latentflow.data.midi_folder import MidiFolderDataModule

    with pytest.raises(DataError, match=r"data.transpose must stay within \[-87, 87\]"):
        MidiFolderDataModule(path=str(tmp_path), transpose=[-100, 100])


def test_a_run_directory_that_cannot_be_created_is_one_line(tmp_path):
    from latentflow.rundir import RunLock

    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match=r"hydra.run.dir: cannot create the run directory"):
        RunLock(blocker / "run").__enter__()


def test_a_checkpoint_with_non_finite_weights_is_refused(tmp_path):
    from latentflow.loading import check_finite_weights
    from latentflow.run import load_module

    ckpt = Path(__file__).resolve().parent / "data" / "user_parts_v0.1.ckpt"
    module = load_module(ckpt, trust_components=["tests"])
    check_finite_weights(module, ckpt)  # a sound one passes
    with torch.no_grad():
        next(module.parameters()).fill_(float("nan"))
    with pytest.raises(ConfigError, match="holds non-finite weights .*diverged"):
        check_finite_weights(module, "nan.ckpt")


def test_resuming_a_checkpoint_with_a_wrong_shaped_weight_is_one_line(tmp_path):
    from latentflow.run import train

    run = ["experiment=jsb/af_af", *TINY, "trainer.max_epochs=1", "trainer.limit_train_batches=2"]
    train(compose_config("train", run, tmp_path / "a"))
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    name = next(iter(ckpt["state_dict"]))
    ckpt["state_dict"][name] = torch.zeros(3, 1, 2)
    torch.save(ckpt, last)
    cfg = compose_config(
        "train", [*run, "trainer.max_epochs=2", f"ckpt_path={last}"], tmp_path / "a"
    )
    with pytest.raises(ConfigError, match=rf"ckpt_path: .*last.ckpt does not fit .*{name}") as err:
        train(cfg)
    assert "\n" not in str(err.value)


def cli(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_module(module, *args, cwd=cwd, timeout=120)


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv,message",
    [
        (["latentflow.train", "seed=-1"], "seed must be an integer"),
        (["latentflow.train", "experiment=cpu/ptb/xyz"], "no such recipe (available: cpu/ptb/"),
        (["latentflow.evaluate", "ckpt_path=x.ckpt", "splits=[]"], "splits must be"),
        (["latentflow.sample", "ckpt_path=x.ckpt", "midi.velocity=300"], "midi.velocity"),
    ],
    ids=["train-seed", "train-recipe", "eval-splits", "sample-velocity"],
)
def test_the_clis_say_it_in_one_line_and_write_nothing(argv, message, tmp_path):
    out = tmp_path / "out"
    done = cli(*argv, f"hydra.run.dir={out}", cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in done.stderr
    written = [p for p in out.rglob("*") if p.is_file() and ".hydra" not in p.parts]
    assert not [p for p in written if p.name not in ("train.log", "evaluate.log", "sample.log")]
