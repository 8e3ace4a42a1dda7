"""Start-up validation: every bad setting is a one-line error naming its config key, raised
before any data is read or any model is built. The model parts themselves are checked by
``latentflow.run.check_components`` (import, arguments, protocols)."""

from __future__ import annotations

import math
from typing import Any

from latentflow.lightning.anneal import SCHEDULE_KINDS


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the key."""


def _get(cfg: Any, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        node = node.get(part) if hasattr(node, "get") else None
    return node


def _positive_int(cfg: Any, key: str, minimum: int = 1) -> None:
    value = _get(cfg, key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key} must be an integer >= {minimum}, got {value!r}")


def _choice(value: Any, key: str, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{key} must be one of {list(choices)}, got {value!r}")


def validate_train_config(cfg: Any) -> None:
    """Check the scalar settings of a composed training config (a DictConfig or a dict)."""
    seed = cfg.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    validate_trainer(cfg.get("trainer") or {})
    _positive_int(cfg, "train.elbo_samples")
    _positive_int(cfg, "eval.num_samples")
    _positive_int(cfg, "eval.chunk_size")
    _positive_int(cfg, "eval.val_num_samples")
    lr = _get(cfg, "optimizer.lr")
    if lr is not None and (
        isinstance(lr, bool) or not isinstance(lr, int | float) or not 0 < lr < math.inf
    ):
        raise ConfigError(f"optimizer.lr must be a finite number > 0, got {lr!r}")
    anneal = cfg.get("anneal") or {}
    _choice(anneal.get("kind", "none"), "anneal.kind", SCHEDULE_KINDS)
    compile_cfg = cfg.get("compile") or {}
    if compile_cfg.get("flows"):
        import torch._dynamo

        backends = torch._dynamo.list_backends(exclude_tags=())
        _choice(compile_cfg.get("backend", "inductor"), "compile.backend", backends)


def validate_trainer(trainer: Any) -> None:
    """The Trainer settings Lightning would refuse (with a traceback) or that cannot work."""
    for key, minimum in (("max_epochs", -1), ("min_epochs", 0), ("max_steps", -1)):
        value = trainer.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f"trainer.{key} must be an integer, got {value!r}")
        if value is not None and value < minimum:
            raise ConfigError(f"trainer.{key} must be >= {minimum}, got {value}")
    accelerator = str(trainer.get("accelerator") or "auto")
    if accelerator in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(
                f"trainer.accelerator={accelerator} but this machine has no usable CUDA GPU "
                f"(torch {torch.__version__}): use trainer=cpu, or install a CUDA build of torch"
            )
