"""Start-up validation: every bad setting is a one-line error naming its config key, raised
before any data is read or any model is built.

``validate_train_config``, ``validate_eval_config`` and ``validate_sample_config`` are the
three tools' entry points; the checks they share are the helpers below. ``check_components``
builds every model part once on a tiny stand-in (imports, arguments, protocols) and
``check_cluster`` compares the Trainer's devices with Slurm's tasks."""

from __future__ import annotations

import math
import os
from typing import Any

import torch
from omegaconf import DictConfig

from latentflow.components import ComponentError, instantiate, is_node
from latentflow.configs import components_of, model_name, plain
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


def _number(cfg: Any, key: str, low: float, high: float, *, low_open: bool = False) -> None:
    """A finite number in [low, high] (``low_open``: (low, high]); None passes."""
    value = _get(cfg, key)
    if value is None:
        return
    ok = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
    ok = ok and (low < value if low_open else low <= value) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise ConfigError(
            f"{key} must be a finite number in {bracket}{low}, {high}], got {value!r}"
        )


def _int_in(cfg: Any, key: str, low: int, high: int) -> None:
    value = _get(cfg, key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{key} must be an integer in [{low}, {high}], got {value!r}")


SEED_MAX = 2**32 - 1  # what numpy and Lightning's seed_everything accept
# the metrics a validation logs (val/<key>); a monitor must name one of them
VAL_METRICS = tuple(
    f"{name}{suffix}"
    for name in ("nll_paper_nats", "nll_cond_nats", "nll_paper_bpc", "nll_cond_bpc")
    for suffix in ("", "_stderr")
) + ("nll", "nll_nats_per_token", "perplexity", "recon", "kl", "num_sequences", "num_tokens")


def _choice(value: Any, key: str, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{key} must be one of {list(choices)}, got {value!r}")


def validate_train_config(cfg: Any) -> None:
    """Check the scalar settings of a composed training config (a DictConfig or a dict)."""
    _int_in(cfg, "seed", 0, SEED_MAX)
    if cfg.get("seed") is None:
        raise ConfigError(f"seed must be an integer in [0, {SEED_MAX}], got None")
    validate_trainer(cfg.get("trainer") or {})
    _positive_int(cfg, "train.elbo_samples")
    _positive_int(cfg, "train.max_nonfinite_steps")
    _positive_int(cfg, "runtime.threads")
    _positive_int(cfg, "anneal.zero", minimum=0)
    _positive_int(cfg, "anneal.rampup", minimum=0)
    _number(cfg, "anneal.floor", 0.0, 1.0)
    monitor = cfg.get("monitor")
    if monitor is not None:
        stage, _, key = str(monitor).partition("/")
        if stage != "train" and not (stage == "val" and key in VAL_METRICS):
            raise ConfigError(
                f"monitor must be val/<metric> (one of {', '.join(VAL_METRICS)}) or "
                f"train/<metric>, got {monitor!r}"
            )
        limit = _get(cfg, "trainer.limit_val_batches")
        if stage == "val" and limit is not None and limit == 0:
            raise ConfigError(
                f"trainer.limit_val_batches=0 turns validation off, but monitor={monitor} needs "
                "it (the best checkpoint, the LR schedule, early stopping)"
            )
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


def validate_eval_config(cfg: Any) -> None:
    """``latentflow-eval``: every setting checked before the checkpoint is read."""
    splits = cfg.get("splits")
    if not splits or any(s not in ("val", "test") for s in splits):
        raise ConfigError(f"splits must be a non-empty subset of [val, test], got {splits!r}")
    _int_in(cfg, "seed", 0, SEED_MAX)
    _positive_int(cfg, "eval.num_samples")
    _positive_int(cfg, "eval.chunk_size")
    _positive_int(cfg, "runtime.threads")
    validate_trainer(cfg.get("trainer") or {})


def validate_sample_config(cfg: Any) -> None:
    """``latentflow-sample``: every setting checked before the checkpoint is read."""
    _positive_int(cfg, "num_samples")
    _positive_int(cfg, "length")
    _positive_int(cfg, "batch_size")
    _positive_int(cfg, "num_print", minimum=0)
    _positive_int(cfg, "runtime.threads")
    _int_in(cfg, "seed", 0, SEED_MAX)
    _number(cfg, "temperature", 0.0, 1e6, low_open=True)
    device = str(cfg.get("device", "cpu"))
    import re

    if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise ConfigError(f"device must be cpu, cuda or cuda:N, got {device!r}")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"device: {device} requested but CUDA is not available")
    _number(cfg, "midi.tempo_bpm", 0.0, 1000.0, low_open=True)
    _number(cfg, "midi.step_beats", 0.0, 64.0, low_open=True)
    _int_in(cfg, "midi.velocity", 1, 127)
    _int_in(cfg, "midi.program", 0, 127)
    _int_in(cfg, "audio.program", 0, 127)


def validate_trainer(trainer: Any) -> None:
    """The Trainer settings Lightning would refuse (with a traceback) or that cannot work."""
    for key, minimum in (("max_epochs", -1), ("min_epochs", 0), ("max_steps", -1)):
        value = trainer.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f"trainer.{key} must be an integer, got {value!r}")
        if value is not None and value < minimum:
            raise ConfigError(f"trainer.{key} must be >= {minimum}, got {value}")
    accumulate = trainer.get("accumulate_grad_batches")
    if accumulate is not None and (
        isinstance(accumulate, bool) or not isinstance(accumulate, int) or accumulate < 1
    ):
        raise ConfigError(
            f"trainer.accumulate_grad_batches must be an integer >= 1, got {accumulate!r}"
        )
    _number({"trainer": trainer}, "trainer.gradient_clip_val", 0.0, math.inf)
    accelerator = str(trainer.get("accelerator") or "auto")
    if accelerator in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(
                f"trainer.accelerator={accelerator} but this machine has no usable CUDA GPU "
                f"(torch {torch.__version__}): use trainer=cpu, or install a CUDA build of torch"
            )


def check_components(cfg: DictConfig) -> None:
    """Build every model part once on a tiny stand-in of the data, before anything is read:
    each import, argument and protocol error is one ``ComponentError`` naming its key."""
    import inspect

    from latentflow.components import locate
    from latentflow.models.build import build_net

    components = components_of(cfg)
    model = components["model"]
    if not is_node(model):
        raise ConfigError("model: no model chosen (model=flow | model=lstm, or model._target_)")
    target = locate(model["_target_"], "model")
    try:
        takes_prior = "prior" in inspect.signature(target).parameters
    except (TypeError, ValueError):
        takes_prior = components["prior"] is not None
    if takes_prior and components["prior"] is None:
        raise ConfigError(
            f"prior: {model_name(components)} needs a prior: choose one (prior=af_af, "
            "prior=iaf_scf, ...) or set prior._target_"
        )
    if not takes_prior and components["prior"] is not None:
        raise ConfigError(
            f"prior: {model_name(components)} takes no prior: drop it (~prior) or choose a "
            "latent model (model=flow)"
        )
    data_target = plain(cfg.data).get("_target_") if cfg.get("data") else None
    kind = getattr(locate(data_target, "data"), "kind", "text") if data_target else "text"
    stand_in = {"kind": kind if kind in ("text", "music") else "text", "num_features": 8}
    stand_in["max_length"] = 16
    with torch.random.fork_rng(devices=[]):
        net = build_net(components, stand_in)
        make_optimizer = instantiate(components["optimizer"], "optimizer", partial=True)
        optimizer = make_optimizer(net.parameters())
        if components["lr_schedule"] is not None:
            from latentflow.protocols import ValidationLRSchedule, missing_members

            schedule = instantiate(components["lr_schedule"], "lr_schedule", partial=True)(
                optimizer
            )
            torch_kinds = (
                torch.optim.lr_scheduler.LRScheduler,
                torch.optim.lr_scheduler.ReduceLROnPlateau,
            )
            missing = missing_members(schedule, ValidationLRSchedule)
            if not isinstance(schedule, torch_kinds) and missing:
                raise ComponentError(
                    f"lr_schedule: {type(schedule).__name__} is neither a torch LR scheduler "
                    "nor a ValidationLRSchedule (latentflow.protocols): missing "
                    + ", ".join(missing)
                )


def check_cluster(cfg: DictConfig) -> None:
    """Under Slurm the srun tasks are the ranks: tasks per node must equal trainer.devices."""
    from pytorch_lightning.plugins.environments import SLURMEnvironment

    per_node = os.environ.get("SLURM_NTASKS_PER_NODE", "").split("(")[0]
    devices = cfg.trainer.get("devices")
    if per_node.isdigit() and isinstance(devices, int) and SLURMEnvironment.detect():
        if int(per_node) != devices:
            raise ConfigError(
                f"trainer.devices={devices} but Slurm runs {per_node} tasks per node: set "
                f"trainer.devices={per_node} (hydra/launcher=slurm ties the two)"
            )
