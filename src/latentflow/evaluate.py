"""``latentflow-eval ckpt_path=...``: rebuild a model from its checkpoint alone (no YAML) and
write its validation/test metrics (``metrics.json`` in this run's directory).

    latentflow-eval ckpt_path=outputs/train/<run>/checkpoints/last.ckpt
    latentflow-eval ckpt_path=... eval.num_samples=200 splits=[test]
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from latentflow.config_checks import ConfigError
from latentflow.data.download import DataError
from latentflow.runtime import apply_runtime
from latentflow.train import CONF_DIR, evaluate_best, write_json

log = logging.getLogger("latentflow.eval")


def load_module(ckpt_path: str | Path, map_location: str = "cpu") -> Any:
    """The LightningModule stored in a checkpoint, rebuilt from its saved hyperparameters."""
    from latentflow.lightning.module import SequenceLitModule

    path = Path(ckpt_path)
    if not path.is_file():
        raise ConfigError(f"ckpt_path: no checkpoint file at {path}")
    try:
        return SequenceLitModule.load_from_checkpoint(path, map_location=map_location)
    except (RuntimeError, KeyError, EOFError, ValueError) as err:
        raise ConfigError(f"ckpt_path: {path} is not a latentflow checkpoint ({err})") from err


def datamodule_from_checkpoint(module: Any, overrides: dict[str, Any]) -> Any:
    """The datamodule the model was trained on, with loader/root settings overridden."""
    data_cfg = dict(module.hparams.get("data_config") or {})
    if not data_cfg:
        raise ConfigError("ckpt_path: the checkpoint stores no data config (data_config)")
    data_cfg.update({k: v for k, v in overrides.items() if v is not None})
    datamodule = hydra.utils.instantiate(data_cfg)
    datamodule.prepare_data()
    datamodule.setup("validate")
    vocab = module.hparams.get("vocab")
    if vocab is not None and list(datamodule.vocab.symbols) != list(vocab):
        raise DataError("the data's vocabulary differs from the one stored in the checkpoint")
    return datamodule


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    apply_runtime(cfg.runtime.get("threads"), cfg.runtime.get("tune_malloc", True))
    module = load_module(cfg.ckpt_path)
    if cfg.eval.get("num_samples") is not None:
        if cfg.eval.num_samples < 1:
            raise ConfigError(f"eval.num_samples must be >= 1, got {cfg.eval.num_samples}")
        module.eval_samples = cfg.eval.num_samples
    if cfg.eval.get("chunk_size") is not None:
        module.eval_chunk = cfg.eval.chunk_size
    datamodule = datamodule_from_checkpoint(module, dict(cfg.data))
    trainer = pl.Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=cfg.trainer.devices,
        logger=False,
        use_distributed_sampler=False,
        default_root_dir=cfg.paths.output_dir,
    )
    splits = list(cfg.splits)
    bad = [s for s in splits if s not in ("val", "test")]
    if bad:
        raise ConfigError(f"splits must be a subset of [val, test], got {bad}")
    metrics = evaluate_best(trainer, module, datamodule, None, cfg.seed, splits)
    run_config = module.hparams.get("run_config") or {}  # the training run's config
    payload = {
        "checkpoint": str(cfg.ckpt_path),
        "experiment": run_config.get("experiment_name"),  # so scripts/results_table.py lists it
        "paper": run_config.get("paper") or {},
        "eval_samples": module.eval_samples,
        "seed": cfg.seed,
        **metrics,
    }
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "metrics.json", payload)
    print(json.dumps(metrics, indent=2, default=float))
    return payload


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    torch.set_grad_enabled(False)
    try:
        evaluate(cfg)
    except (ConfigError, DataError) as err:
        print(f"latentflow-eval: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
