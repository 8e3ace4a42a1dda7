"""The run-directory guard of ``latentflow-train``, as a Hydra callback.

Hydra writes ``.hydra/{config,hydra,overrides}.yaml`` and opens ``train.log`` in a run's directory
before the task function starts, so a check made there comes too late: a second run pointed at
a directory in use would already have rewritten the first run's files. ``RunDirGuard`` runs at
``on_run_start``, before any of that: it takes the directory's lock (``rundir.RunLock``, held
until the run ends; ``train()`` sees it in ``HELD`` and does not lock again) and refuses a
fresh run on another run's files (``rundir.check_fresh_start``). Hydra turns a callback's
exceptions into warnings and goes on, so a refusal here is printed as the one
``latentflow-train: error:`` line and exits 2. The scalar settings are checked here too
(``config_checks.validate_train_config``), so a bad one leaves no directory behind.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, read_write

from latentflow.config_checks import ConfigError, validate_train_config
from latentflow.rundir import RunLock, check_fresh_start

# Run directories whose lock this process's guard holds (an flock conflicts with a second open
# file of the same process, so train() must not take it again).
HELD: set[str] = set()


def holds_lock(run_dir: Path) -> bool:
    return os.path.realpath(run_dir) in HELD


def resuming(ckpt_path: Any) -> bool:
    """Whether a run continues a checkpoint: ``ckpt_path`` given, or a requeued Slurm job."""
    return ckpt_path is not None or int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0


def in_sweep() -> bool:
    """Whether this process runs a job of a Hydra multirun."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


class SettingsGuard(Callback):
    """Check a tool's settings before Hydra creates the run directory (``latentflow-eval``,
    ``latentflow-sample``): a bad one is one line, exit 2, and nothing is written."""

    def __init__(self, tool: str) -> None:
        from latentflow import config_checks

        self.prog = {"eval": "latentflow-eval", "sample": "latentflow-sample"}[tool]
        self.check = getattr(config_checks, f"validate_{tool}_config")

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            self.check(config)
        except ConfigError as err:
            print(f"{self.prog}: error: {err}", file=sys.stderr)
            raise SystemExit(2) from None


class RunDirGuard(Callback):
    """Lock the run directory and check it before Hydra writes into it (module docstring)."""

    def __init__(self) -> None:
        self._lock: RunLock | None = None

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from pytorch_lightning.utilities.rank_zero import rank_zero_only

        if rank_zero_only.rank != 0:  # a DDP rank Lightning re-launched: rank 0 holds the lock
            return
        try:  # a bad setting: one line, before anything is created
            validate_train_config(config)
        except ConfigError as err:
            print(f"latentflow-train: error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        run_dir = Path(str(config.hydra.run.dir)).absolute()
        with read_write(config.hydra.run):  # resolved once: ${now:...} must not move on
            config.hydra.run.dir = str(run_dir)
        lock = RunLock(run_dir)
        try:
            lock.__enter__()
            try:
                overwrite = bool(config.get("overwrite"))
                check_fresh_start(run_dir, resuming(config.get("ckpt_path")), overwrite)
            except BaseException:
                lock.__exit__(None, None, None)
                raise
        except ConfigError as err:
            print(f"latentflow-train: error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        self._lock = lock
        HELD.add(os.path.realpath(run_dir))

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self._lock is not None:
            HELD.discard(os.path.realpath(self._lock.path.parent))
            self._lock.__exit__(None, None, None)
            self._lock = None
