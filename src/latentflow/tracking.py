"""Experiment trackers for a run: CSV, TensorBoard, Weights & Biases (``logger`` group)."""

from __future__ import annotations

import hashlib
import netrc
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from latentflow.components import instantiate, is_node


def wandb_key_configured() -> bool:
    """A W&B API key in WANDB_API_KEY or in ~/.netrc (what ``wandb login`` writes)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1]
    try:
        return netrc.netrc().authenticators(host.split("/")[0]) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_run_id(out_dir: Path) -> str:
    """A W&B run id derived from the absolute run directory."""
    return "lf-" + hashlib.sha1(str(out_dir.resolve()).encode()).hexdigest()[:16]


def build_loggers(cfg: DictConfig) -> list[Any]:
    """The run's loggers from the ``logger`` group (a dict of ``_target_`` nodes)."""
    nodes = OmegaConf.to_container(cfg.get("logger") or DictConfig({}), resolve=True)
    if "wandb" in nodes:
        wandb = nodes["wandb"]
        if wandb.get("offline") is None:
            # Offline unless a key is configured (an explicit WANDB_MODE still wins): a run never
            # blocks on an unreachable server. `wandb sync <run dir>/wandb/offline-run-*` uploads.
            wandb["offline"] = not os.environ.get("WANDB_MODE") and not wandb_key_configured()
        if wandb.get("id") is None:
            # One W&B run per run directory: a resumed or requeued run continues it.
            wandb["id"] = wandb_run_id(Path(cfg.paths.output_dir))
    loggers = [
        instantiate(node, f"logger.{name}") for name, node in nodes.items() if is_node(node)
    ]
    for logger in loggers:
        if hasattr(logger, "_get_next_version"):
            # Fix the CSV/TensorBoard version now: with ddp_spawn every trainer call (fit,
            # validate, test) runs in fresh workers that would each open a new version.
            _ = logger.version
    return loggers


def finish_loggers(trainer: Any) -> None:
    """End the W&B run (flushing it to disk), so that the next job of a multirun in the same
    process starts its own run instead of reusing this one."""
    for lg in trainer.loggers if trainer is not None else []:
        if type(lg).__name__ == "WandbLogger":
            lg.finalize("success")
            import wandb

            if wandb.run is not None:
                wandb.finish()
