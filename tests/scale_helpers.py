"""Test-only hooks for the scale/tracking tests, importable from the subprocesses they start
(``+callbacks.<name>._target_=tests.scale_helpers.<Class>`` with the repository as cwd)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.experimental.callback import Callback as HydraCallback


class PauseAtStep(pl.Callback):
    """Once, at the start of optimizer step ``step``: write ``marker`` (this process's pid)
    and wait until a signal has been noted (Lightning's SIGTERM flag, PreemptionCheckpoint's
    flag) or ``timeout`` seconds pass. A test signals the process at that known point."""

    def __init__(self, step: int, marker: str, timeout: float = 120.0) -> None:
        self.step, self.marker, self.timeout = step, Path(marker), timeout

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.global_step != self.step or self.marker.exists():
            return
        if trainer.global_rank == 0:
            tmp = self.marker.with_suffix(".tmp")
            tmp.write_text(str(os.getpid()))
            tmp.replace(self.marker)
        deadline = time.time() + self.timeout
        while time.time() < deadline:
            flagged = any(getattr(cb, "requested", False) for cb in trainer.callbacks)
            if trainer.received_sigterm or flagged:
                return
            time.sleep(0.02)
        raise RuntimeError(f"PauseAtStep: no signal within {self.timeout} s")


class PauseInValidation(PauseAtStep):
    """``PauseAtStep`` at the start of validation batch ``batch`` of epoch ``epoch`` during fit:
    a test signals the process while it validates."""

    def __init__(self, epoch: int, batch: int, marker: str, timeout: float = 120.0) -> None:
        super().__init__(-1, marker, timeout)
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        return

    def on_validation_batch_start(
        self, trainer: pl.Trainer, pl_module: Any, batch: Any, batch_idx: int, *args: Any
    ) -> None:
        fitting = trainer.state.fn == "fit" and not trainer.sanity_checking
        if fitting and trainer.current_epoch == self.epoch and batch_idx == self.batch:
            self.step = trainer.global_step
            super().on_train_batch_start(trainer)


class RecordSteps(pl.Callback):
    """Append one JSON line per training batch to ``path``: epoch, batch index, optimizer step,
    KL weight and the batch's sequence indices (the trace a resumed run must continue)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        row = {
            "epoch": trainer.current_epoch,
            "batch_idx": batch_idx,
            "step": trainer.global_step,
            "kl_weight": pl_module.kl_weight(),
            "index": batch["index"].tolist(),
        }
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")


def read_steps(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


class SignalAtStep(pl.Callback):
    """Send ``signal`` to this process at the start of optimizer step ``step`` (in-process)."""

    def __init__(self, step: int, signal: str) -> None:
        self.step, self.signal = step, signal

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        import signal

        if trainer.global_step == self.step:
            os.kill(os.getpid(), getattr(signal, self.signal))


class NaNGradients(pl.Callback):
    """Fill every gradient with NaN from optimizer step ``from_step`` on (a diverged run)."""

    def __init__(self, from_step: int = 0) -> None:
        self.from_step = from_step

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: Any, optimizer) -> None:
        if trainer.global_step >= self.from_step:
            for p in pl_module.parameters():
                if p.grad is not None:
                    p.grad.fill_(float("nan"))


class RecordReturn(HydraCallback):
    """Hydra callback: write each job's return value (what a sweeper receives) to
    ``<dir>/<job num>.json``."""

    def __init__(self, dir: str) -> None:
        self.dir = Path(dir)

    def on_job_end(self, config: Any, job_return: Any, **kwargs: Any) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        value = job_return.return_value if job_return.status.name == "COMPLETED" else None
        payload = {
            "overrides": list(job_return.overrides or []),
            "value": value,
            "status": job_return.status.name,
            "output_dir": str(config.hydra.runtime.output_dir),
        }
        num = config.hydra.job.get("num", 0)
        (self.dir / f"{num}.json").write_text(json.dumps(payload))


def same_tensors(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Keys whose tensors differ (exactly) between two state dicts."""
    return [k for k in a if not torch.equal(a[k], b[k])]


REPO = Path(__file__).resolve().parents[1]
# A run long enough to resume in the middle of it: 3 epochs of 5 batches, KL weight moving
# within epochs (so the batch index must be restored), no logger, no test split.
RESUMABLE = [
    "experiment=jsb/af_af",
    "debug=tiny",
    "runtime.threads=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "test=false",
    "trainer.max_epochs=3",
    "anneal.kind=epoch",
    "anneal.zero=1",
    "anneal.rampup=2",
]


def subprocess_env(data_root: Path, **extra: str) -> dict[str, str]:
    """The environment of a CLI run in a test: one thread, the real data, W&B offline."""
    env = dict(os.environ)
    env.pop("WANDB_API_KEY", None)
    env.update(
        {
            "OMP_NUM_THREADS": "1",
            "LATENTFLOW_DATA": str(data_root),
            "WANDB_MODE": "offline",
            "WANDB_SILENT": "true",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def train_command(*args: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "latentflow.train", *args]


def run_cli(args: list[str], env: dict[str, str], timeout: float = 300) -> Any:
    """``latentflow-train args`` in a subprocess (repository as cwd, so ``tests`` imports)."""
    import subprocess

    return subprocess.run(
        train_command(*args), cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def wait_for(path: Path, proc: Any, timeout: float = 240) -> str:
    """The content of ``path`` once it exists; fails early when ``proc`` has exited."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists():
            return path.read_text()
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"process exited ({proc.returncode}) before {path}:\n{out}")
        time.sleep(0.1)
    raise AssertionError(f"{path} did not appear within {timeout} s")


def tiny_module(kind: str = "music", seed: int | None = 0) -> Any:
    """A small SequenceLitModule on synthetic sizes (no data files)."""
    from latentflow.data.lengths import LengthDistribution
    from latentflow.lightning.module import SequenceLitModule

    text = kind == "text"
    vocab = ["<pad>", "<unk>", "_", "a", "b", "c"] if text else None
    from .helpers import recipe_components

    components = recipe_components(
        "ablation_no_nlsq",  # AF/AF with affine transforms
        "model.pos_dim=4",
        latent_dim=4,
        pos_dim=4,
        flow_layers=1,
        flow_hidden=8,
        conditioner_hidden=8,
        conditioner_layers=1,
        dropout=0.2,
    )
    module = SequenceLitModule(
        components=components,
        data={"kind": kind, "num_features": len(vocab) if text else 88, "max_length": 12},
        vocab=vocab,
        elbo_samples=2,
        eval_samples=3,
        eval_chunk=3,
        anneal={"kind": "none"},
        seed=seed,
    )
    lengths = LengthDistribution.from_lengths(list(range(1, 13)), 12, 1.0)
    module.net.length_distribution.load_state_dict(lengths.state_dict())
    return module


def synthetic_batch(lengths: list[int], first_index: int, kind: str = "music") -> dict:
    """A padded batch like the collate functions build, sequence indices from first_index."""
    g = torch.Generator().manual_seed(first_index)
    lengths_t = torch.tensor(lengths)
    T = max(lengths)
    mask = torch.arange(T)[None] < lengths_t[:, None]
    if kind == "music":
        x = (torch.rand(len(lengths), T, 88, generator=g) < 0.1).float() * mask[..., None]
    else:
        x = torch.randint(2, 6, (len(lengths), T), generator=g) * mask
    index = torch.arange(first_index, first_index + len(lengths))
    return {"x": x, "lengths": lengths_t, "mask": mask, "index": index}


def wandb_records(path: Path) -> list[Any]:
    """The protobuf records of an offline W&B run file (``run-<id>.wandb``).

    The file is a LevelDB-style log: a 7-byte header, then 32 KiB blocks of chunks, each with
    a 7-byte header (crc32, length, type: 1 full, 2 first, 3 middle, 4 last)."""
    import struct

    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", "not a W&B run file"
    block, pos, partial, records = 32768, 7, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 0:  # zero padding up to the end of the block
            pos += left - 7 - length
        elif kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(partial + chunk)
            records.append(record)
            partial = b""
        else:
            partial += chunk
    return records


def wandb_finished_records(run_dir: Path, timeout: float = 60) -> list[Any]:
    """The records of an offline run once its ``exit`` record is on disk: wandb 0.31's service
    process writes the file after ``finish()`` has returned (seconds later, measured)."""
    deadline = time.time() + timeout
    while True:
        files = list(run_dir.glob("run-*.wandb"))
        records = wandb_records(files[0]) if len(files) == 1 else []
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.time() > deadline:
            return records
        time.sleep(0.2)


def wandb_history(records: list[Any]) -> list[dict[str, Any]]:
    rows = []
    for record in records:
        if record.WhichOneof("record_type") == "history":
            rows.append(
                {
                    (i.key or "/".join(i.nested_key)): json.loads(i.value_json)
                    for i in record.history.item
                }
            )
    return rows


class KillAt(pl.Callback):
    """SIGKILL this process (no handler runs, nothing is flushed): right after optimizer step
    ``step``'s batch has ended (every checkpoint callback has written by then), or, with
    ``validation_of_epoch``, at the second batch of that epoch's validation during fit."""

    def __init__(self, step: int = -1, validation_of_epoch: int = -1) -> None:
        self.step, self.validation_of_epoch = step, validation_of_epoch

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), 9)

    def on_validation_batch_start(
        self, trainer: pl.Trainer, pl_module: Any, batch: Any, batch_idx: int, *args: Any
    ) -> None:
        fitting = trainer.state.fn == "fit" and not trainer.sanity_checking
        if fitting and trainer.current_epoch == self.validation_of_epoch and batch_idx == 1:
            os.kill(os.getpid(), 9)


class NaNWeights(pl.Callback):
    """Fill every parameter with NaN before each validation of a fit (a model ruined by a
    diverged step), so every validation gives a NaN NLL."""

    def on_validation_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if trainer.state.fn != "fit":
            return
        with torch.no_grad():
            for p in pl_module.parameters():
                p.fill_(float("nan"))


class WaitForTimeLimit(pl.Callback):
    """In the first ``restarts`` runs of a Slurm job (``SLURM_RESTART_COUNT`` below it): after
    ``steps`` optimizer steps in this process, wait at a batch boundary until the time-limit
    signal has reached ``PreemptionCheckpoint`` (at most ``max_wait_s``). Every such run makes
    ``steps`` steps of progress however slow the machine's start-up is; the run after them
    finishes. Same arithmetic as an uninterrupted run: only the waiting differs."""

    def __init__(self, steps: int, restarts: int = 2, max_wait_s: float = 240) -> None:
        self.steps, self.restarts, self.max_wait_s = steps, restarts, max_wait_s
        self.done = 0

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        if int(os.environ.get("SLURM_RESTART_COUNT", "0")) >= self.restarts:
            return
        self.done += 1
        if self.done < self.steps:
            return
        flags = [cb for cb in trainer.callbacks if hasattr(cb, "requested")]
        deadline = time.monotonic() + self.max_wait_s
        while not any(cb.requested for cb in flags) and time.monotonic() < deadline:
            time.sleep(0.5)


class SignalInValidation(pl.Callback):
    """Send ``signal`` to this process at the start of validation batch ``batch`` of epoch
    ``epoch`` during fit (in-process): a pre-emption that lands while the run validates."""

    def __init__(self, epoch: int, batch: int, signal: str = "SIGTERM") -> None:
        self.epoch, self.batch, self.signal = epoch, batch, signal

    def on_validation_batch_start(
        self, trainer: pl.Trainer, pl_module: Any, batch: Any, batch_idx: int, *args: Any
    ) -> None:
        import signal

        fitting = trainer.state.fn == "fit" and not trainer.sanity_checking
        if fitting and trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), getattr(signal, self.signal))


@dataclass
class Reference:
    """An uninterrupted run to compare resumed ones with: its metrics.json payload, its
    ``last.ckpt`` and (when recorded) its training steps."""

    payload: dict[str, Any]
    last: dict[str, Any]
    steps: list[dict[str, Any]] | None = None


def uninterrupted(overrides: list[str], run_dir: Path, trace: Path | None = None) -> Reference:
    """Train ``overrides`` in this process into ``run_dir``, uninterrupted."""
    from latentflow.lightning.checkpoint_io import load_checkpoint_file
    from latentflow.run import train

    from .helpers import compose_config

    _, payload = train(compose_config("train", overrides, run_dir))
    last = load_checkpoint_file(run_dir / "checkpoints" / "last.ckpt")
    return Reference(payload, last, read_steps(trace) if trace else None)


def assert_same_end(run: Path, reference: Reference, steps: int, payload=None) -> None:
    """A resumed run ended exactly where ``reference`` did: the same validation metrics (every
    key) and step count, the same weights and Adam state (moments, step counts), and no
    temporary checkpoint left. ``payload``: its metrics (default: its metrics.json)."""
    from latentflow.lightning.checkpoint_io import TMP_PREFIX, load_checkpoint_file

    payload = payload or json.loads((run / "metrics.json").read_text())
    assert payload["val"] == reference.payload["val"]
    assert payload["global_step"] == reference.payload["global_step"] == steps
    last, ref = load_checkpoint_file(run / "checkpoints" / "last.ckpt"), reference.last
    assert not same_tensors(last["state_dict"], ref["state_dict"])
    opt, ref_opt = last["optimizer_states"][0]["state"], ref["optimizer_states"][0]["state"]
    assert opt.keys() == ref_opt.keys()
    for key in opt:
        assert not same_tensors(opt[key], ref_opt[key]), key
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(TMP_PREFIX)]
