"""Resume policy: which checkpoint a run continues from, whether it may (same settings), whether
it is already finished, and why a fit ended."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.callbacks import Timer
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from latentflow.config_checks import ConfigError
from latentflow.configs import current_hparams, plain
from latentflow.lightning.internals import timer_budget_is_set


def resume_point(cfg: DictConfig, out_dir: Path) -> str | None:
    """The checkpoint a run continues from: ``ckpt_path``, ``auto`` (this run directory's
    last.ckpt, if any) or, in a requeued Slurm job, ``auto`` implicitly."""
    from latentflow.hydra_guard import resuming

    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path is None and resuming(ckpt_path):
        ckpt_path = "auto"  # a requeued Slurm job continues its own run directory
    if ckpt_path == "auto":
        last = out_dir / "checkpoints" / "last.ckpt"
        return str(last) if last.exists() else None
    return None if ckpt_path is None else str(ckpt_path)


def check_resume(cfg: DictConfig, ckpt_path: str, out_dir: Path) -> tuple[dict, str]:
    """Refuse, in one line and before anything is written, a checkpoint that cannot be read or
    was trained with other settings; (the checkpoint, why the run is already finished or "")."""
    from latentflow.rundir import changed_settings, clean_debris, finished, read_checkpoint

    ckpt = read_checkpoint(ckpt_path)
    changed = changed_settings(ckpt["hyper_parameters"], current_hparams(cfg))
    if changed:
        shown = "; ".join(changed[:6]) + (
            f"; and {len(changed) - 6} more" if len(changed) > 6 else ""
        )
        raise ConfigError(
            f"ckpt_path: {ckpt_path} was trained with other settings ({shown}): resuming would "
            "continue another run. Use a new run directory, or the checkpoint's settings"
        )
    if rank_zero_only.rank == 0 and Path(ckpt_path).parent == out_dir / "checkpoints":
        clean_debris(out_dir / "checkpoints", ckpt)
    return ckpt, finished(out_dir, ckpt, plain(cfg.trainer))


def saved_progress(trainer: pl.Trainer, out_dir: Path) -> tuple[int, int]:
    """(epoch, global step) of the fit; spawned ranks (``ddp_spawn``) leave the parent's
    counters at 0, so then they come from ``last.ckpt``."""
    last = out_dir / "checkpoints" / "last.ckpt"
    if trainer.global_step == 0 and trainer.world_size > 1 and last.exists():
        from latentflow.rundir import read_checkpoint

        ckpt = read_checkpoint(last)
        # written at the end of the fit, inside the last epoch (0-based): epochs run = epoch + 1
        return int(ckpt.get("epoch", 0)) + 1, int(ckpt.get("global_step", 0))
    return trainer.current_epoch, trainer.global_step


def stop_reason(trainer: pl.Trainer, timer: Timer) -> str:
    """Why the fit ended: early_stopping, max_time, max_steps or max_epochs."""
    from pytorch_lightning.callbacks import EarlyStopping

    if any(isinstance(c, EarlyStopping) and c.stopped_epoch > 0 for c in trainer.callbacks):
        return "early_stopping"
    if timer_budget_is_set(timer):
        if timer.time_remaining("train") <= 0:
            return "max_time"
    if trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps:
        return "max_steps"
    return "max_epochs"
