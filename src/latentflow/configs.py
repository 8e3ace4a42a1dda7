"""Composed configs and what a run reads from them: ``compose`` (the config a CLI would see),
the model parts as plain nodes, where the model runs.

    from latentflow.configs import compose
    cfg = compose(["experiment=jsb/af_af", "debug=tiny"], output_dir="runs/tiny")
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from latentflow.components import is_node

CONF_DIR = str(Path(__file__).resolve().parent / "conf")


def compose(
    overrides: list[str] | None = None,
    config_name: str = "train",
    output_dir: str | os.PathLike[str] | None = None,
    config_dir: str | os.PathLike[str] | None = None,
) -> DictConfig:
    """The config a CLI would see for ``overrides``, without starting a Hydra job.

    ``output_dir`` is the run directory (``${hydra:runtime.output_dir}``; default: a new one
    under ``outputs/<task>/``); ``config_dir`` adds a folder of your own configs, as
    ``--config-dir`` does: its options join the package's groups, and where both have a file
    of the same name the package's is used (docs: Extending, "Your own config folder").
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    overrides = list(overrides or [])
    if config_dir is not None:
        path = Path(config_dir).resolve()
        overrides.append(f"hydra.searchpath=[file://{path}]")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = hydra_compose(config_name, overrides=overrides, return_hydra_config=True)
    if output_dir is None:
        output_dir = Path("outputs") / str(cfg.task_name) / time.strftime("%Y-%m-%d_%H-%M-%S")
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(Path(output_dir).resolve())
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        if "experiment_name" in cfg:  # resolved now: a later compose resets HydraConfig
            cfg.experiment_name = cfg.get("experiment_name")
        del cfg["hydra"]  # as in a real run: the task sees no hydra node
    return cfg


def plain(node: Any) -> Any:
    """A config node as plain, resolved Python data (what checkpoints store)."""
    if isinstance(node, DictConfig) or OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True)
    return node


def components_of(cfg: DictConfig) -> dict[str, Any]:
    """The run's model parts as plain nodes: model, prior, optimizer, lr_schedule.

    A ``prior`` node without ``_target_`` holds only size presets (``scale=cpu``,
    ``debug=tiny``) for a model that has no prior (the LSTM): it is dropped.
    """
    prior = plain(cfg.get("prior"))
    if prior is not None and not is_node(prior):
        prior = None
    return {
        "model": plain(cfg.get("model")),
        "prior": prior,
        "optimizer": plain(cfg.get("optimizer")),
        "lr_schedule": plain(cfg.get("lr_schedule")),
    }


def model_name(components: dict[str, Any]) -> str:
    """The model's class name (``LatentFlowModel``, ``LSTMLanguageModel``, a user's)."""
    return str((components.get("model") or {}).get("_target_", "?")).rsplit(".", 1)[-1]


def on_cpu(cfg: DictConfig) -> bool:
    """Whether the run's model is on the CPU (``trainer.accelerator``, else ``device``)."""
    trainer = cfg.get("trainer") or {}
    accelerator = str(trainer.get("accelerator") or cfg.get("device") or "cpu")
    if accelerator == "auto":
        return not torch.cuda.is_available()
    return accelerator == "cpu"


def tune_malloc_here(cfg: DictConfig) -> bool:
    """``runtime.tune_malloc``, applied only when the model runs on the CPU: the tuning keeps
    freed memory (peak RSS ~1.9x), a risk under a Slurm --mem limit and no gain for GPU runs."""
    return bool(cfg.runtime.get("tune_malloc", True)) and on_cpu(cfg)


def current_hparams(cfg: DictConfig) -> dict[str, Any]:
    """What a checkpoint of this config would store, for the settings a resume compares."""
    return {
        "components": components_of(cfg),
        "data_config": plain(cfg.data),
        "seed": cfg.seed,
        "anneal": plain(cfg.anneal),
        "elbo_samples": cfg.train.elbo_samples,
    }
