"""``latentflow-train``: fit a model from a Hydra config, then evaluate it.

    latentflow-train experiment=jsb/af_af_cpu
    latentflow-train experiment=ptb/af_af trainer=gpu
    latentflow-train -m prior=af_af,af_scf,iaf_scf transform=affine,nlsq debug=tiny

A run directory holds the resolved ``config.yaml``, ``checkpoints/{best-*,last}.ckpt`` and
``metrics.json`` (validation and test metrics of the best checkpoint, both conventions, with
standard errors). The return value (the monitored metric) is what Hydra sweepers optimise.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from latentflow.config_checks import ConfigError, validate_train_config
from latentflow.data.download import DataError
from latentflow.runtime import apply_runtime

log = logging.getLogger("latentflow.train")
CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")


def data_info(datamodule: Any) -> dict[str, Any]:
    return {
        "kind": datamodule.kind,
        "num_features": int(datamodule.num_features),
        "max_length": int(datamodule.max_length),
    }


def transform_name(cfg: DictConfig) -> str:
    """The scalar transform: one pinned by the prior (the -NLSq ablations) wins over the group."""
    return (cfg.get("prior") or {}).get("transform") or cfg.transform.name


def instantiate_dict(node: DictConfig | None) -> list[Any]:
    """Instantiate every ``_target_`` entry of a dict-of-configs group (callbacks, loggers)."""
    out = []
    for _, conf in (node or {}).items():
        if isinstance(conf, DictConfig) and "_target_" in conf:
            out.append(hydra.utils.instantiate(conf))
    return out


def build_loggers(cfg: DictConfig) -> list[Any]:
    import os

    logger_cfg = cfg.get("logger") or {}
    if "wandb" in logger_cfg and logger_cfg.wandb.get("offline") is None:
        # Offline unless a key is configured: a run never blocks on an unreachable server.
        logger_cfg.wandb.offline = not os.environ.get("WANDB_API_KEY")
    return instantiate_dict(logger_cfg)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=float))
    tmp.replace(path)


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
        out = run(module, datamodule=datamodule, ckpt_path=ckpt, verbose=False)
        prefix = f"{split}/"
        returned = {
            k[len(prefix) :]: float(v)
            for k, v in (out[0] if out else {}).items()
            if k.startswith(prefix)
        }
        results[split] = module.final_metrics.get(split) or returned
    return results


def train(cfg: DictConfig) -> tuple[float | None, dict[str, Any]]:
    """Fit and evaluate; returns (monitored metric, metrics.json payload)."""
    from latentflow.lightning.module import SequenceLitModule

    validate_train_config(cfg)
    apply_runtime(cfg.runtime.get("threads"), cfg.runtime.get("tune_malloc", True))
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out_dir / "config.yaml", resolve=True)
    pl.seed_everything(cfg.seed, workers=True)

    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    log.info("data: %s", datamodule.describe())

    module = SequenceLitModule(
        model=OmegaConf.to_container(cfg.model, resolve=True),
        prior=OmegaConf.to_container(cfg.prior, resolve=True),
        transform=transform_name(cfg),
        data=data_info(datamodule),
        data_config=OmegaConf.to_container(cfg.data, resolve=True),
        vocab=list(datamodule.vocab.symbols) if datamodule.vocab is not None else None,
        lr=cfg.train.lr,
        elbo_samples=cfg.train.elbo_samples,
        eval_samples=cfg.eval.num_samples,
        eval_chunk=cfg.eval.chunk_size,
        val_samples=cfg.eval.get("val_num_samples"),
        anneal=OmegaConf.to_container(cfg.anneal, resolve=True),
        max_nonfinite_steps=cfg.train.max_nonfinite_steps,
        run_config=OmegaConf.to_container(cfg, resolve=True),
    )
    module.net.length_distribution.load_state_dict(datamodule.length_distribution.state_dict())
    n_params = sum(p.numel() for p in module.parameters())
    log.info("model: %s, %.2fM parameters", cfg.model.kind, n_params / 1e6)

    callbacks = instantiate_dict(cfg.get("callbacks"))
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks, logger=build_loggers(cfg) or False
    )
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path == "auto":
        last = out_dir / "checkpoints" / "last.ckpt"
        ckpt_path = str(last) if last.exists() else None
    start = time.time()
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    train_time = time.time() - start

    best = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
    splits = ["val", "test"] if cfg.get("test", True) else ["val"]
    metrics = evaluate_best(trainer, module, datamodule, best, cfg.seed, splits)
    payload = {
        "experiment": cfg.get("experiment_name"),
        "model": cfg.model.kind,
        "prior": OmegaConf.to_container(cfg.prior, resolve=True)
        if cfg.model.kind == "flow"
        else None,
        "transform": transform_name(cfg) if cfg.model.kind == "flow" else None,
        "best_checkpoint": best,
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "train_time_s": train_time,
        "parameters": n_params,
        "seed": cfg.seed,
        "paper": OmegaConf.to_container(cfg.get("paper") or {}, resolve=True),
        **metrics,
    }
    if trainer.is_global_zero:
        write_json(out_dir / "metrics.json", payload)
        log.info("metrics: %s", json.dumps({k: payload.get(k) for k in splits}, default=float))
    value = metrics.get("val", {}).get(cfg.monitor.split("/", 1)[-1])
    return (value if value is not None and math.isfinite(value) else None), payload


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        value, _ = train(cfg)
    except (ConfigError, DataError) as err:
        print(f"latentflow-train: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    return value


if __name__ == "__main__":
    main()
