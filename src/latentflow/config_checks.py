"""Every start-up check, in one place: each bad setting is a one-line ``ConfigError`` naming
its key, raised before any data, checkpoint or model is read.

``validate_train_config``, ``validate_eval_config`` and ``validate_sample_config`` are the
three tools' entry points: the ranges of ``latentflow.schema`` plus the rules that involve
more than one key or the machine. ``check_components`` builds every model part once on a
tiny stand-in (imports, arguments, protocols), ``check_cluster`` compares the Trainer's devices
with Slurm's tasks and ``check_logger_extras`` names the extra a chosen logger needs."""

from __future__ import annotations

import importlib.util
import os
import re
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from latentflow.components import ComponentError, instantiate, is_node
from latentflow.configs import components_of, model_name, plain
from latentflow.schema import EVAL, SAMPLE, TRAIN, ConfigError, check_keys, get

__all__ = [
    "ConfigError",
    "check_cluster",
    "check_components",
    "check_logger_extras",
    "validate_eval_config",
    "validate_sample_config",
    "validate_train_config",
]
# the metrics a validation logs (val/<key>); a monitor must name one of them
VAL_METRICS = tuple(
    f"{name}{suffix}"
    for name in ("nll_paper_nats", "nll_cond_nats", "nll_paper_bpc", "nll_cond_bpc")
    for suffix in ("", "_stderr")
) + ("nll", "nll_nats_per_token", "perplexity", "recon", "kl", "num_sequences", "num_tokens")
# a logger class -> (the modules it needs, the extra that installs them)
LOGGER_EXTRAS = {
    "WandbLogger": (("wandb",), "wandb"),
    "TensorBoardLogger": (("tensorboard", "tensorboardX"), "tensorboard"),
}


def validate_train_config(cfg: Any) -> None:
    """``latentflow-train``: every setting checked before the data or the model is built."""
    check_keys(cfg, TRAIN)
    check_monitor(cfg)
    trainer = cfg.get("trainer") or {}
    for key in ("limit_train_batches", "limit_val_batches", "limit_test_batches"):
        check_batches(trainer, key, low=0)
    check_batches(trainer, "val_check_interval", low=1)
    check_accelerator(cfg)
    compile_cfg = cfg.get("compile") or {}
    if compile_cfg.get("flows"):
        import torch._dynamo

        backends = torch._dynamo.list_backends(exclude_tags=())
        backend = compile_cfg.get("backend", "inductor")
        if backend not in backends:
            raise ConfigError(f"compile.backend must be one of {backends}, got {backend!r}")


def validate_eval_config(cfg: Any) -> None:
    """``latentflow-eval``: every setting checked before the checkpoint is read."""
    splits = cfg.get("splits")
    if not splits or any(s not in ("val", "test") for s in splits):
        raise ConfigError(f"splits must be a non-empty subset of [val, test], got {splits!r}")
    check_keys(cfg, EVAL)
    check_accelerator(cfg)


def validate_sample_config(cfg: Any) -> None:
    """``latentflow-sample``: every setting checked before the checkpoint is read."""
    check_keys(cfg, SAMPLE)
    device = str(cfg.get("device", "cpu"))
    if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise ConfigError(f"device must be cpu, cuda or cuda:N, got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device: {device} requested but CUDA is not available")


def check_monitor(cfg: Any) -> None:
    """``monitor`` names a metric validation logs (or a training one), and validation runs."""
    monitor = cfg.get("monitor")
    if monitor is None:
        return
    stage, _, key = str(monitor).partition("/")
    if stage != "train" and not (stage == "val" and key in VAL_METRICS):
        raise ConfigError(
            f"monitor must be val/<metric> (one of {', '.join(VAL_METRICS)}) or "
            f"train/<metric>, got {monitor!r}"
        )
    limit = get(cfg, "trainer.limit_val_batches")
    if stage == "val" and limit == 0 and not isinstance(limit, bool):
        raise ConfigError(
            f"trainer.limit_val_batches=0 turns validation off, but monitor={monitor} needs "
            "it (the best checkpoint, the LR schedule, early stopping)"
        )


def check_batches(trainer: Any, key: str, low: int) -> None:
    """A Trainer batch count (an integer >= ``low``) or fraction (a number in (0, 1])."""
    value = trainer.get(key)
    if value is None:
        return
    ok = not isinstance(value, bool) and (
        (isinstance(value, int) and value >= low)
        or (isinstance(value, float) and 0.0 <= value <= 1.0 and (low == 0 or value > 0))
    )
    if not ok:
        raise ConfigError(
            f"trainer.{key} must be a count >= {low} or a fraction in "
            f"{'[' if low == 0 else '('}0, 1], got {value!r}"
        )


def check_accelerator(cfg: Any) -> None:
    accelerator = str((cfg.get("trainer") or {}).get("accelerator") or "auto")
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.accelerator={accelerator} but this machine has no usable CUDA GPU "
            f"(torch {torch.__version__}): use trainer=cpu, or install a CUDA build of torch"
        )


def check_logger_extras(cfg: DictConfig) -> None:
    """A logger whose library is not installed: one line naming the extra to install."""
    nodes = OmegaConf.to_container(cfg.get("logger") or DictConfig({}), resolve=False)
    for name, node in nodes.items():
        if not is_node(node):
            continue
        needed = LOGGER_EXTRAS.get(str(node["_target_"]).rsplit(".", 1)[-1])
        if needed and not any(importlib.util.find_spec(m) for m in needed[0]):
            raise ConfigError(
                f"logger.{name} needs the {needed[1]} extra: pip install 'latentflow[{needed[1]}]'"
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
