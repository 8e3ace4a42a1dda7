"""Building a run's parts from its config: the datamodule, the LightningModule, the Trainer
(one ``build_trainer`` for fitting and for evaluating a checkpoint) and the final evaluation."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig

from latentflow.components import instantiate, is_node
from latentflow.config_checks import ConfigError
from latentflow.configs import components_of, plain
from latentflow.tracking import build_loggers


def build_datamodule(node: Any) -> Any:
    return instantiate(plain(node), "data")


def data_info(datamodule: Any) -> dict[str, Any]:
    return {
        "kind": datamodule.kind,
        "num_features": int(datamodule.num_features),
        "max_length": int(datamodule.max_length),
    }


def build_module(cfg: DictConfig, datamodule: Any) -> Any:
    """The LightningModule of a run, its model built with the data's sizes and p(T)."""
    from latentflow.lightning.module import SequenceLitModule

    return SequenceLitModule(
        components=components_of(cfg),
        data=data_info(datamodule),
        data_config=plain(cfg.data),
        vocab=list(datamodule.vocab.symbols) if datamodule.vocab is not None else None,
        elbo_samples=cfg.train.elbo_samples,
        eval_samples=cfg.eval.num_samples,
        eval_chunk=cfg.eval.chunk_size,
        val_samples=cfg.eval.get("val_num_samples"),
        anneal=plain(cfg.anneal),
        max_nonfinite_steps=cfg.train.max_nonfinite_steps,
        run_config=plain(cfg),
        seed=cfg.seed,
        monitor=cfg.monitor,
        length_distribution=datamodule.length_distribution,
    )


def instantiate_dict(node: Any, key: str) -> list[Any]:
    """Instantiate every ``_target_`` entry of a dict-of-configs group (callbacks, loggers)."""
    out = []
    for name, conf in (plain(node) or {}).items():
        if is_node(conf):
            out.append(instantiate(conf, f"{key}.{name}"))
    return out


def build_plugins() -> list[Any]:
    """Atomic checkpoint writes; under Slurm, Lightning's own auto-requeue off (the requeue is
    submitit's, after ``PreemptionCheckpoint`` has saved; one mechanism, not two)."""
    from pytorch_lightning.plugins.environments import SLURMEnvironment

    from latentflow.lightning.checkpoint_io import AtomicCheckpointIO

    plugins: list[Any] = [AtomicCheckpointIO()]
    if SLURMEnvironment.detect():
        plugins.append(SLURMEnvironment(auto_requeue=False))
    return plugins


def build_trainer(
    cfg: DictConfig, callbacks: list[pl.Callback], *, for_eval: bool = False
) -> pl.Trainer:
    """The Trainer of ``cfg.trainer`` with its callbacks, loggers and atomic checkpoints, or,
    ``for_eval`` (re-evaluating a checkpoint), one on the same accelerator and devices with no
    loggers and every batch in this process. Lightning's refusals are one-line ConfigErrors."""
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    if for_eval:
        node: dict[str, Any] = {
            "_target_": "pytorch_lightning.Trainer",
            "accelerator": cfg.trainer.accelerator,
            "devices": cfg.trainer.devices,
            "use_distributed_sampler": False,
            "default_root_dir": cfg.paths.output_dir,
        }
        loggers: Any = False
    else:
        node, loggers = plain(cfg.trainer), build_loggers(cfg) or False
    factory = instantiate({**node, "_partial_": True}, "trainer")
    try:
        return factory(callbacks=callbacks, logger=loggers, plugins=build_plugins())
    except MisconfigurationException as err:
        raise ConfigError(f"trainer: {str(err).splitlines()[0]}") from None


def evaluate_best(
    trainer: pl.Trainer, module: Any, datamodule: Any, ckpt: str | None, seed: int, splits
) -> dict[str, dict[str, float]]:
    """Validation/test metrics of ``ckpt`` (each split re-seeded, so runs compare exactly).

    Values come from the module's float64 sums when it ran in this process, else (spawned
    ranks) from what the trainer returns."""
    results: dict[str, dict[str, float]] = {}
    for split in splits:
        pl.seed_everything(seed, workers=True, verbose=False)
        module.final_metrics.pop(split, None)
        run = trainer.validate if split == "val" else trainer.test
        # weights_only: what our checkpoint I/O does anyway (checkpoint_io), said to Lightning
        out = run(module, datamodule=datamodule, ckpt_path=ckpt, verbose=False, weights_only=True)
        prefix = f"{split}/"
        returned = {
            k[len(prefix) :]: float(v)
            for k, v in (out[0] if out else {}).items()
            if k.startswith(prefix)
        }
        results[split] = module.final_metrics.get(split) or returned
    return results
