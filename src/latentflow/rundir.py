"""A run directory's safety rules: one run at a time, resume only what it can resume exactly.

* ``RunLock``: an exclusive ``flock`` on ``<run>/.lock`` for the run's life. The kernel drops it
  when the process ends however it ends (kill -9 included), so a stale lock of a dead process
  never blocks; a live holder is named (pid, host, start time) in the one-line refusal.
* ``read_checkpoint``: a checkpoint that is missing, not a file, truncated, corrupt, not
  latentflow's or asks to run code while loading is refused in one line, before any data is
  read or anything is written; nothing in the file is executed.
* ``changed_settings``: resuming with another seed, model, optimizer, schedule or data is
  refused, naming the keys that differ (it would silently continue another run).
* ``finished``: a run whose metrics.json matches its last checkpoint and whose stop condition
  still holds has nothing to do: resuming it changes nothing.
* ``clean_debris``: temporary files of interrupted writes and best checkpoints the last
  checkpoint no longer points to are removed on resume.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from latentflow.config_checks import ConfigError
from latentflow.lightning.checkpoint_io import (
    TMP_PREFIX,
    CheckpointReadError,
    UnsafeCheckpointError,
    load_checkpoint_file,
)

log = logging.getLogger(__name__)
LOCK_NAME = ".lock"
# data settings that may change on resume: where the files are and how they are loaded
DATA_FREE = ("root", "num_workers", "download", "base_url", "eval_batch_size")


class RunLock:
    """``with RunLock(run_dir):`` -- exclusive use of a run directory (module docstring)."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise ConfigError(
                f"hydra.run.dir: cannot create the run directory {self.path.parent} "
                f"({err.strerror or err})"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 4096).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise ConfigError(
                f"run directory {self.path.parent} is in use ({holder}): wait for that run to "
                "end, or give this one its own directory (hydra.run.dir=...)"
            ) from None
        os.ftruncate(fd, 0)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {stamp}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


# What a run writes itself into its directory (Hydra's .hydra/ and train.log come before it).
RUN_FILES = ("config.yaml", "metrics.json", "timing.csv", "failed.json")


def holds_run(run_dir: Path) -> str:
    """ "finished" or "started" when ``run_dir`` holds a run of latentflow-train, else ""."""
    if (run_dir / "metrics.json").is_file():
        return "finished"
    ckpts = run_dir / "checkpoints"
    if (run_dir / "config.yaml").is_file() or (ckpts.is_dir() and any(ckpts.glob("*.ckpt"))):
        return "started"
    return ""


def check_fresh_start(run_dir: Path, resuming: bool, overwrite: bool) -> None:
    """A fresh run (no ``ckpt_path``) never lands on another run's files: refused in one line,
    unless ``overwrite`` (``overwrite=true``, or a job of a sweep continued in its directory),
    which removes that run's checkpoints and results first, with a warning."""
    if resuming:
        return
    held = holds_run(run_dir)
    if not held:
        return
    if not overwrite:
        raise ConfigError(
            f"hydra.run.dir: {run_dir} already holds a {held} run: resume it with "
            "ckpt_path=auto, choose another directory, or replace it with overwrite=true"
        )
    import shutil

    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    for name in (*RUN_FILES, "csv", "tensorboard", "wandb"):
        target = run_dir / name
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)
    log.warning("removed the %s run in %s (overwrite=true, or a sweep reusing it)", held, run_dir)


def read_checkpoint(path: str | os.PathLike[str], key: str = "ckpt_path") -> dict[str, Any]:
    """The checkpoint's contents, or a one-line ConfigError saying what is wrong with it."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{key}: no checkpoint at {path}")
    if not path.is_file():
        raise ConfigError(f"{key}: {path} is not a file")
    try:
        ckpt = load_checkpoint_file(path)
    except UnsafeCheckpointError as err:
        raise ConfigError(f"{key}: {err}") from None
    except OSError as err:
        raise ConfigError(f"{key}: cannot read {path} ({err.strerror or err})") from None
    except CheckpointReadError as err:
        what = "empty" if path.stat().st_size == 0 else "truncated, corrupt or not a checkpoint"
        detail = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        raise ConfigError(f"{key}: cannot read {path}: {what} ({detail})") from None
    if not isinstance(ckpt, Mapping) or "state_dict" not in ckpt:
        raise ConfigError(f"{key}: {path} is not a Lightning checkpoint (no state_dict)")
    hparams = ckpt.get("hyper_parameters")
    if not isinstance(hparams, Mapping) or "components" not in hparams:
        raise ConfigError(
            f"{key}: {path} is not a checkpoint of this latentflow (no component nodes in its "
            "hyperparameters; checkpoints of latentflow 0.1 name their parts instead: retrain)"
        )
    return dict(ckpt)


def _flatten(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _flatten(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, node


def changed_settings(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``key: saved -> current`` for every setting that differs between a checkpoint's
    hyperparameters and the module the current config would build (same layout)."""

    def view(hp: Mapping[str, Any]) -> dict[str, Any]:
        comps = hp.get("components") or {}
        data = {k: v for k, v in (hp.get("data_config") or {}).items() if k not in DATA_FREE}
        parts = {
            "seed": hp.get("seed"),
            **{name: comps.get(name) for name in ("model", "prior", "optimizer", "lr_schedule")},
            "data": data,
            "anneal": hp.get("anneal"),
            "train.elbo_samples": hp.get("elbo_samples"),
        }
        return dict(_flatten(parts))

    old, new = view(saved), view(current)
    return [
        f"{k}: {old.get(k)!r} -> {new.get(k)!r}"
        for k in sorted(set(old) | set(new))
        if old.get(k) != new.get(k)
    ]


def finished(run_dir: Path, ckpt: Mapping[str, Any], trainer_cfg: Mapping[str, Any]) -> str:
    """Why the run in ``run_dir`` is already complete under these trainer settings ("" when it
    is not): its metrics.json was written from this very checkpoint and the run stopped for a
    reason that still holds (max_epochs, max_steps, early stopping, the time budget)."""
    metrics_path = run_dir / "metrics.json"
    if not metrics_path.is_file():
        return ""
    try:
        metrics = json.loads(metrics_path.read_text())
    except (OSError, ValueError):
        return ""
    if metrics.get("global_step") != ckpt.get("global_step"):
        return ""
    reason = metrics.get("stop_reason")
    epochs = int(metrics.get("epochs") or 0)
    if reason == "max_epochs":
        max_epochs = trainer_cfg.get("max_epochs")
        return (
            f"max_epochs={max_epochs} reached"
            if max_epochs in (None, -1) or epochs >= max_epochs
            else ""
        )
    if reason == "max_steps":
        max_steps = trainer_cfg.get("max_steps") or -1
        return "max_steps reached" if 0 < max_steps <= int(metrics["global_step"]) else ""
    if reason == "max_time":
        return "its time budget was spent (raise trainer.max_time to go on)"
    if reason == "early_stopping":
        return f"early stopping ended it at epoch {epochs}"
    return ""


def clean_debris(ckpt_dir: Path, ckpt: Mapping[str, Any]) -> list[str]:
    """Remove what interrupted runs leave behind; the names removed."""
    removed = []
    if not ckpt_dir.is_dir():
        return removed
    for path in ckpt_dir.iterdir():
        if path.name.startswith(TMP_PREFIX):
            path.unlink(missing_ok=True)
            removed.append(path.name)
    kept: set[str] = set()
    for state in (ckpt.get("callbacks") or {}).values():  # ModelCheckpoint-like states
        if isinstance(state, Mapping) and state.get("best_model_path"):
            kept.add(Path(state["best_model_path"]).name)
            kept |= {Path(p).name for p in (state.get("best_k_models") or {})}
    if kept:
        for path in ckpt_dir.glob("best-*.ckpt"):
            if path.name not in kept:
                path.unlink(missing_ok=True)
                removed.append(path.name)
    if removed:
        log.info("removed debris of interrupted runs: %s", ", ".join(sorted(removed)))
    return removed


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """``payload`` as JSON at ``path``, atomically (a temporary file renamed over it)."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=float))
    tmp.replace(path)
