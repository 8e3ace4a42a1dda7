"""Experiment trackers for a run: CSV, TensorBoard, Weights & Biases (``logger`` group)."""

from __future__ import annotations

import hashlib
import logging
import netrc
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from latentflow.components import instantiate, is_node
from latentflow.config_checks import ConfigError, check_logger_extras

log = logging.getLogger(__name__)


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


def wandb_reachable(timeout: float = 3.0) -> bool:
    """Whether the W&B server answers an HTTP request within ``timeout`` seconds (any answer,
    an error status included). W&B itself waits ~100 s for an unreachable server, then raises."""
    import urllib.error
    import urllib.request

    url = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").rstrip("/") + "/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True  # the server answered
    except (OSError, ValueError):
        return False


# logger class -> (a module it needs, the extra that installs it)
def build_loggers(cfg: DictConfig) -> list[Any]:
    """The run's loggers from the ``logger`` group (a dict of ``_target_`` nodes)."""
    check_logger_extras(cfg)
    nodes = OmegaConf.to_container(cfg.get("logger") or DictConfig({}), resolve=True)
    if "wandb" in nodes:
        wandb = nodes["wandb"]
        if os.environ.get("WANDB_MODE", None) == "":
            del os.environ["WANDB_MODE"]  # empty means unset (W&B would fail validating it)
        mode = os.environ.get("WANDB_MODE")
        if mode is not None and mode not in ("online", "offline", "disabled", "dryrun", "run"):
            raise ConfigError(f"WANDB_MODE={mode!r}: use online, offline or disabled")
        unreachable = wandb.pop("on_unreachable", "offline")
        if unreachable not in ("offline", "error"):
            raise ConfigError(
                f"logger.wandb.on_unreachable must be offline or error, got {unreachable!r}"
            )
        if wandb.get("offline") is None:
            # Offline unless a key is configured (an explicit WANDB_MODE still wins): a run never
            # blocks on an unreachable server. `wandb sync <run dir>/wandb/offline-run-*` uploads.
            wandb["offline"] = not os.environ.get("WANDB_MODE") and not wandb_key_configured()
        online = not wandb["offline"] and os.environ.get("WANDB_MODE") in (None, "online", "run")
        if online and not wandb_reachable():
            if unreachable == "error":
                raise ConfigError(
                    "logger=wandb: the W&B server is unreachable from here (set "
                    "logger.wandb.on_unreachable=offline to log offline and `wandb sync` later)"
                )
            log.warning("W&B server unreachable: logging offline (`wandb sync` uploads it later)")
            wandb["offline"] = True
            if os.environ.get("WANDB_MODE") in ("online", "run"):
                os.environ["WANDB_MODE"] = "offline"
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
            import wandb  # installed: a WandbLogger exists

            if wandb.run is not None:
                wandb.finish()
