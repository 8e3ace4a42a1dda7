"""The Python API behind the command-line tools, for notebooks and scripts.

    from latentflow.run import compose, train
    cfg = compose(["experiment=jsb/af_af", "debug=tiny"], output_dir="runs/tiny")
    value, metrics = train(cfg)

``train``, ``evaluate`` and ``sample`` take a composed config (``compose``, or what
``hydra.main`` hands the CLIs in ``latentflow.train``, ``latentflow.evaluate`` and
``latentflow.sample``); ``load_module`` opens a checkpoint. Errors a user can fix are
``latentflow.cli.USER_ERRORS`` with one-line messages naming the config key. The parts these
functions put together: ``configs`` (composing), ``config_checks`` (every start-up check),
``assembly`` (datamodule, module, Trainer), ``resume`` (resume policy), ``loading``
(checkpoints), ``rundir`` (the run directory), ``cli`` (the command-line layer).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Timer
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from latentflow.assembly import (
    build_datamodule,
    build_module,
    build_trainer,
    evaluate_best,
    instantiate_dict,
)
from latentflow.config_checks import (
    ConfigError,
    check_cluster,
    check_components,
    check_logger_extras,
    validate_eval_config,
    validate_sample_config,
    validate_train_config,
)
from latentflow.configs import (
    CONF_DIR,
    components_of,
    compose,
    model_name,
    on_cpu,
    plain,
    tune_malloc_here,
)
from latentflow.loading import check_finite_weights, datamodule_from_checkpoint, load_module
from latentflow.resume import check_resume, resume_point, saved_progress, stop_reason
from latentflow.rundir import write_json
from latentflow.runtime import allocator, apply_runtime, resolve_precision, warn_slow_bf16_on_cpu
from latentflow.tracking import finish_loggers

__all__ = [
    "CONF_DIR",
    "build_recipe_net",
    "components_of",
    "compose",
    "evaluate",
    "load_module",
    "sample",
    "train",
]
log = logging.getLogger("latentflow.run")


# ----------------------------------------------------------------------------- train
def train(
    cfg: DictConfig, extra_callbacks: list[pl.Callback] | tuple[pl.Callback, ...] = ()
) -> tuple[float | None, dict[str, Any]]:
    """Fit and evaluate; returns (monitored metric, metrics.json payload).

    The run directory is locked for the run's life (``latentflow.rundir``); a resume is checked
    against the checkpoint before anything is written; a run that is already finished returns
    its metrics.json and changes nothing. ``extra_callbacks`` join the config's ``callbacks``
    (Python use: a notebook's own hooks).
    """
    from latentflow.hydra_guard import holds_lock, in_sweep, resuming
    from latentflow.rundir import RunLock, check_fresh_start

    validate_train_config(cfg)
    check_components(cfg)
    check_cluster(cfg)
    check_logger_extras(cfg)
    datamodule = build_datamodule(cfg.data)  # its settings checked; nothing is read yet
    apply_runtime(cfg.runtime.get("threads"), tune_malloc_here(cfg))
    log.info("allocator: %s", allocator())
    if cfg.get("trainer") is not None and cfg.trainer.get("precision") == "auto":
        cfg.trainer.precision = resolve_precision("auto", on_cpu(cfg))  # saved resolved
    warn_slow_bf16_on_cpu((cfg.get("trainer") or {}).get("precision"), on_cpu(cfg))
    out_dir = Path(cfg.paths.output_dir)
    # One process per run directory: ranks launched by Lightning or srun share rank 0's lock.
    # (Under latentflow-train the Hydra guard already holds it: latentflow.hydra_guard.)
    mine = rank_zero_only.rank == 0 and not holds_lock(out_dir)
    with RunLock(out_dir) if mine else contextlib.nullcontext():
        if rank_zero_only.rank == 0:
            # A sweep continued in the same directory numbers its jobs from 0 again (Hydra's
            # sweepers do): its trials replace the earlier ones there, said in the log.
            overwrite = bool(cfg.get("overwrite")) or in_sweep()
            check_fresh_start(out_dir, resuming(cfg.get("ckpt_path")), overwrite)
        ckpt_path = resume_point(cfg, out_dir)
        if ckpt_path:
            _, done = check_resume(cfg, ckpt_path, out_dir)
            if done:
                payload = json.loads((out_dir / "metrics.json").read_text())
                log.warning("%s is finished (%s): nothing to do", out_dir, done)
                value = payload.get("val", {}).get(cfg.monitor.split("/", 1)[-1])
                return value, {**payload, "already_finished": done}
        if rank_zero_only.rank == 0:
            OmegaConf.save(cfg, out_dir / "config.yaml", resolve=True)
        return fit_and_evaluate(cfg, out_dir, datamodule, ckpt_path, list(extra_callbacks))


def fit_and_evaluate(
    cfg: DictConfig,
    out_dir: Path,
    datamodule: Any,
    ckpt_path: str | None,
    extra_callbacks: list[pl.Callback],
) -> tuple[float | None, dict[str, Any]]:
    """Fit from ``ckpt_path`` (or from scratch), evaluate the best checkpoint, write
    metrics.json; returns (monitored metric, payload)."""
    pl.seed_everything(cfg.seed, workers=True)
    datamodule.prepare_data()
    datamodule.setup("fit")
    log.info("data: %s", datamodule.describe())
    module = prepared_module(cfg, datamodule)
    trainer: pl.Trainer | None = None
    try:
        trainer = build_trainer(cfg, fit_callbacks(cfg, out_dir, extra_callbacks))
        train_time, reason, best = fit(cfg, trainer, module, datamodule, ckpt_path)
        splits = ["val", "test"] if cfg.get("test", True) else ["val"]
        eval_start = time.time()
        metrics = evaluate_best(trainer, module, datamodule, best, cfg.seed, splits)
        final_eval_time = time.time() - eval_start
    finally:
        finish_loggers(trainer)
    epochs, global_step = saved_progress(trainer, out_dir)
    components = module.hparams["components"]
    payload = {
        "experiment": cfg.get("experiment_name"),
        "model": model_name(components),
        "prior": components["prior"],
        "best_checkpoint": best,
        "epochs": epochs,
        "global_step": global_step,
        "stop_reason": reason,
        "train_time_s": train_time,
        "final_eval_time_s": final_eval_time,
        "parameters": sum(p.numel() for p in module.parameters()),
        "seed": cfg.seed,
        "paper": plain(cfg.paper) if cfg.get("paper") else {},
        **metrics,
    }
    if trainer.is_global_zero:
        write_json(out_dir / "metrics.json", payload)
        log.info("metrics: %s", json.dumps({k: payload.get(k) for k in splits}, default=float))
    value = metrics.get("val", {}).get(cfg.monitor.split("/", 1)[-1])
    return (value if value is not None and math.isfinite(value) else None), payload


def prepared_module(cfg: DictConfig, datamodule: Any) -> Any:
    """The run's LightningModule, its flows compiled when ``compile.flows`` asks for it."""
    module = build_module(cfg, datamodule)
    compile_cfg = cfg.get("compile") or {}
    if compile_cfg.get("flows"):
        from latentflow.models.compile import compile_flows

        backend = compile_cfg.get("backend", "inductor")
        names = compile_flows(module.net, backend, compile_cfg.get("mode"))
        log.info("torch.compile (%s): %s", backend, ", ".join(names) or "no flow stacks")
    n_params = sum(p.numel() for p in module.parameters())
    name = model_name(module.hparams["components"])
    log.info("model: %s, %.2fM parameters", name, n_params / 1e6)
    return module


def fit_callbacks(
    cfg: DictConfig, out_dir: Path, extra_callbacks: list[pl.Callback]
) -> list[pl.Callback]:
    """The config's callbacks, the ones every fit has, then the caller's own."""
    from latentflow.lightning.callbacks import PhaseTimer, ResumeDataOrder
    from latentflow.runtime import process_start_time

    callbacks = [*instantiate_dict(cfg.get("callbacks"), "callbacks"), ResumeDataOrder()]
    callbacks.append(PhaseTimer(str(out_dir / "timing.csv"), process_start_time()))
    callbacks += extra_callbacks
    if cfg.trainer.get("max_time") is None and not any(isinstance(c, Timer) for c in callbacks):
        callbacks.append(Timer())  # training time, kept in checkpoints across resumes
    return callbacks


def fit(
    cfg: DictConfig, trainer: pl.Trainer, module: Any, datamodule: Any, ckpt_path: str | None
) -> tuple[float, str, str | None]:
    """Run ``trainer.fit``; (training seconds, why it stopped, the best checkpoint)."""
    if ckpt_path:
        log.info("resuming from %s", ckpt_path)
        # Resuming into its own run directory: the checkpoints there are expected.
        warnings.filterwarnings("ignore", message=r"Checkpoint directory .* is not empty")
    start = time.time()
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except RuntimeError as err:  # restoring a checkpoint whose weights do not fit this model
        if not str(err).startswith("Error(s) in loading state_dict"):
            raise
        detail = " ".join(str(err).split("\n", 1)[-1].split())[:200]
        raise ConfigError(
            f"ckpt_path: {ckpt_path} does not fit this run's model ({detail})"
        ) from None
    # Over every process of a resumed run, up to its last checkpoint before this one; this
    # process's wall clock where the fit ran elsewhere (spawned ranks keep their Timer).
    timer = next(c for c in trainer.callbacks if isinstance(c, Timer))
    ran_here = timer.start_time("train") is not None
    train_time = timer.time_elapsed("train") if ran_here else time.time() - start
    best = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
    if trainer.checkpoint_callback is not None and best is None and trainer.world_size == 1:
        raise FloatingPointError(
            f"no validation of this run gave a finite {cfg.monitor}: nothing it learned is "
            "usable, so no best checkpoint was written (lower optimizer.lr, check the data)"
        )
    return train_time, stop_reason(trainer, timer), best


# ----------------------------------------------------------------------------- evaluate
def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Re-evaluate a checkpoint on the splits ``cfg.splits``; writes and returns metrics.json."""
    validate_eval_config(cfg)
    apply_runtime(cfg.runtime.get("threads"), tune_malloc_here(cfg))
    module = load_module(cfg.ckpt_path, trust_components=cfg.get("trust_components"))
    check_finite_weights(module, cfg.ckpt_path)
    if cfg.eval.get("num_samples") is not None:
        module.eval_samples = cfg.eval.num_samples
    if cfg.eval.get("chunk_size") is not None:
        module.eval_chunk = cfg.eval.chunk_size
    datamodule = datamodule_from_checkpoint(module, dict(cfg.data))
    trainer = build_trainer(cfg, [], for_eval=True)
    metrics = evaluate_best(trainer, module, datamodule, None, cfg.seed, list(cfg.splits))
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


# ----------------------------------------------------------------------------- sample
def sample(cfg: DictConfig) -> dict[str, Any]:
    """Load the checkpoint, draw ``cfg.num_samples`` sequences, write them; returns the
    ``samples.json`` payload (``latentflow.generation``)."""
    from latentflow.generation import draw_lengths, generate, write_samples

    validate_sample_config(cfg)
    apply_runtime(cfg.runtime.get("threads"), tune_malloc_here(cfg))
    module = load_module(cfg.ckpt_path, trust_components=cfg.get("trust_components"))
    check_finite_weights(module, cfg.ckpt_path)
    check_sampling(cfg, module.hparams)
    net, hp = module.net.to(cfg.device), module.hparams
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    lengths = draw_lengths(net, cfg.num_samples, cfg.length, generator)
    start = time.perf_counter()
    xs, log_pz = generate(net, lengths, cfg.batch_size, cfg.temperature, cfg.argmax, generator)
    seconds = time.perf_counter() - start

    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {
        "checkpoint": str(cfg.ckpt_path),
        "model": model_name(hp["components"]),
        "prior": hp["components"].get("prior"),
        "data": hp["data"]["kind"],
        "num_samples": cfg.num_samples,
        "seed": cfg.seed,
        "temperature": cfg.temperature,
        "argmax": cfg.argmax,
        "lengths": lengths.tolist(),
        "log_pz": None if log_pz is None else log_pz.tolist(),
        "generation_seconds": seconds,
    }
    payload.update(write_samples(xs, hp, cfg, out_dir))
    write_json(out_dir / "samples.json", payload)
    print(f"wrote {len(xs)} samples to {out_dir} ({seconds:.2f} s of generation)")
    return payload


def check_sampling(cfg: DictConfig, hp: Any) -> None:
    """What the checkpoint must hold for this sampling request, checked before any work."""
    text = hp["data"]["kind"] == "text"
    if text and not hp.get("vocab"):
        raise ConfigError(f"ckpt_path: {cfg.ckpt_path} stores no vocabulary to decode text")
    if (cfg.get("audio") or {}).get("enabled"):
        if text:
            raise ConfigError("audio=on: audio is for music data; this checkpoint is a text model")
        from latentflow.generation import audio_settings

        audio_settings(cfg)
    max_length = int(hp["data"]["max_length"])
    if cfg.length is not None and cfg.length > max_length and not cfg.get("allow_long"):
        raise ConfigError(
            f"length={cfg.length} is beyond the model's support: p(T) ends at {max_length}, and "
            "longer positions reuse the last position features. Lower it, or set "
            "allow_long=true to generate anyway"
        )


# ----------------------------------------------------------------------------- recipes
def build_recipe_net(
    overrides: list[str], data: dict[str, Any], length_distribution: Any = None
) -> torch.nn.Module:
    """The model a training run with ``overrides`` builds, for data of ``data``'s sizes
    (``kind``, ``num_features``, ``max_length``): for benchmarks, notebooks and scripts."""
    from latentflow.models.build import build_net

    return build_net(components_of(compose(overrides)), data, length_distribution)
