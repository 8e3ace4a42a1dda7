"""``latentflow-train``: fit a model from a Hydra config, then evaluate it.

    latentflow-train experiment=cpu/jsb/af_af
    latentflow-train experiment=ptb/af_af trainer=gpu
    latentflow-train -m prior=af_af,af_scf,iaf_scf transform=affine,nlsq debug=tiny
    latentflow-train experiment=ptb/af_af trainer=ddp trainer.devices=4 logger=wandb
    latentflow-train ckpt_path=auto hydra.run.dir=<an earlier run>   # resume (exactly)

A run directory holds the resolved ``config.yaml``, ``checkpoints/{best-*,last}.ckpt`` and
``metrics.json`` (validation and test metrics of the best checkpoint, both conventions, with
standard errors). The return value (the monitored metric) is what Hydra sweepers optimise.

Checkpoints are written atomically (``AtomicCheckpointIO``); SIGTERM and the Slurm requeue
signal leave a ``last.ckpt`` at a batch boundary (``PreemptionCheckpoint``), from which
``ckpt_path=auto`` resumes exactly. Errors a user can fix (bad config, missing data, a run
that keeps producing NaN) end in one ``latentflow-train: error: ...`` line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import netrc
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.callbacks import Timer
from pytorch_lightning.utilities.exceptions import SIGTERMException
from pytorch_lightning.utilities.rank_zero import rank_zero_only

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


def wandb_key_configured() -> bool:
    """A W&B API key in WANDB_API_KEY or in ~/.netrc (what ``wandb login`` writes)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1]
    try:
        return netrc.netrc().authenticators(host.split("/")[0]) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def build_loggers(cfg: DictConfig) -> list[Any]:
    logger_cfg = cfg.get("logger") or {}
    if "wandb" in logger_cfg and logger_cfg.wandb.get("offline") is None:
        # Offline unless a key is configured (an explicit WANDB_MODE still wins): a run never
        # blocks on an unreachable server. `wandb sync <run dir>/wandb/offline-run-*` uploads.
        logger_cfg.wandb.offline = not os.environ.get("WANDB_MODE") and not wandb_key_configured()
    if "wandb" in logger_cfg and logger_cfg.wandb.get("id") is None:
        # One W&B run per run directory: a resumed or requeued run continues it.
        with open_dict(logger_cfg):
            logger_cfg.wandb.id = wandb_run_id(Path(cfg.paths.output_dir))
    loggers = instantiate_dict(logger_cfg)
    for logger in loggers:
        if hasattr(logger, "_get_next_version"):
            # Fix the CSV/TensorBoard version now: with ddp_spawn every trainer call (fit,
            # validate, test) runs in fresh workers that would each open a new version.
            _ = logger.version
    return loggers


def wandb_run_id(out_dir: Path) -> str:
    """A W&B run id derived from the absolute run directory."""
    return "lf-" + hashlib.sha1(str(out_dir.resolve()).encode()).hexdigest()[:16]


def build_plugins() -> list[Any]:
    """Atomic checkpoint writes; under Slurm, Lightning's own auto-requeue off (the requeue is
    submitit's, after ``PreemptionCheckpoint`` has saved; one mechanism, not two)."""
    from pytorch_lightning.plugins.environments import SLURMEnvironment

    from latentflow.lightning.checkpoint_io import AtomicCheckpointIO

    plugins: list[Any] = [AtomicCheckpointIO()]
    if SLURMEnvironment.detect():
        plugins.append(SLURMEnvironment(auto_requeue=False))
    return plugins


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


def finish_loggers(trainer: pl.Trainer | None) -> None:
    """End the W&B run (flushing it to disk), so that the next job of a multirun in the same
    process starts its own run instead of reusing this one."""
    for lg in trainer.loggers if trainer is not None else []:
        run = getattr(lg, "_experiment", None)
        if type(lg).__name__ == "WandbLogger" and run is not None:
            run.finish()
            lg._experiment = None


def saved_progress(trainer: pl.Trainer, out_dir: Path) -> tuple[int, int]:
    """(epoch, global step) of the fit; spawned ranks (``ddp_spawn``) leave the parent's
    counters at 0, so then they come from ``last.ckpt``."""
    last = out_dir / "checkpoints" / "last.ckpt"
    if trainer.global_step == 0 and trainer.world_size > 1 and last.exists():
        import torch

        ckpt = torch.load(last, map_location="cpu", weights_only=False)
        # written at the end of the fit, inside the last epoch (0-based): epochs run = epoch + 1
        return int(ckpt.get("epoch", 0)) + 1, int(ckpt.get("global_step", 0))
    return trainer.current_epoch, trainer.global_step


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
    check_cluster(cfg)
    apply_runtime(cfg.runtime.get("threads"), cfg.runtime.get("tune_malloc", True))
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if rank_zero_only.rank == 0:  # ranks launched by Lightning or srun run this too
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
        seed=cfg.seed,
    )
    module.net.length_distribution.load_state_dict(datamodule.length_distribution.state_dict())
    compile_cfg = cfg.get("compile") or {}
    if compile_cfg.get("flows") and cfg.model.kind == "flow":
        from latentflow.models.factory import compile_flows

        backend = compile_cfg.get("backend", "inductor")
        names = compile_flows(module.net, backend, compile_cfg.get("mode"))
        log.info("torch.compile (%s): %s", backend, ", ".join(names))
    n_params = sum(p.numel() for p in module.parameters())
    log.info("model: %s, %.2fM parameters", cfg.model.kind, n_params / 1e6)

    from latentflow.lightning.callbacks import ResumeDataOrder

    callbacks = [*instantiate_dict(cfg.get("callbacks")), ResumeDataOrder()]
    if cfg.trainer.get("max_time") is None and not any(isinstance(c, Timer) for c in callbacks):
        callbacks.append(Timer())  # training time, kept in checkpoints across resumes
    trainer: pl.Trainer | None = None
    try:
        trainer = hydra.utils.instantiate(
            cfg.trainer,
            callbacks=callbacks,
            logger=build_loggers(cfg) or False,
            plugins=build_plugins(),
        )
        ckpt_path = cfg.get("ckpt_path")
        if ckpt_path is None and int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0:
            ckpt_path = "auto"  # a requeued Slurm job continues its own run directory
        if ckpt_path == "auto":
            last = out_dir / "checkpoints" / "last.ckpt"
            ckpt_path = str(last) if last.exists() else None
        if ckpt_path:
            log.info("resuming from %s", ckpt_path)
            # Resuming into its own run directory: the checkpoints there are expected.
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* is not empty")
        start = time.time()
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        # Over every process of a resumed run, up to its last checkpoint before this one; this
        # process's wall clock where the fit ran elsewhere (spawned ranks keep their Timer).
        timer = next(c for c in trainer.callbacks if isinstance(c, Timer))
        ran_here = timer.start_time("train") is not None
        train_time = timer.time_elapsed("train") if ran_here else time.time() - start

        best = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
        splits = ["val", "test"] if cfg.get("test", True) else ["val"]
        metrics = evaluate_best(trainer, module, datamodule, best, cfg.seed, splits)
    finally:
        finish_loggers(trainer)
    epochs, global_step = saved_progress(trainer, out_dir)
    payload = {
        "experiment": cfg.get("experiment_name"),
        "model": cfg.model.kind,
        "prior": OmegaConf.to_container(cfg.prior, resolve=True)
        if cfg.model.kind == "flow"
        else None,
        "transform": transform_name(cfg) if cfg.model.kind == "flow" else None,
        "best_checkpoint": best,
        "epochs": epochs,
        "global_step": global_step,
        "train_time_s": train_time,
        "parameters": n_params,
        "seed": cfg.seed,
        "paper": OmegaConf.to_container(cfg.paper, resolve=True) if cfg.get("paper") else {},
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
    except FloatingPointError as err:  # the non-finite guard gave up
        print(f"latentflow-train: error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    except SIGTERMException:
        last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
        print(
            f"latentflow-train: stopped by SIGTERM; resume with ckpt_path={last}",
            file=sys.stderr,
        )
        raise SystemExit(128 + 15) from None
    return value


if __name__ == "__main__":
    main()
