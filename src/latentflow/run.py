"""The one runner behind the command-line tools, and the Python API for notebooks and scripts.

    from latentflow.run import compose, train
    cfg = compose(["experiment=jsb/af_af", "debug=tiny"], output_dir="runs/tiny")
    value, metrics = train(cfg)

``train``, ``evaluate`` and ``sample`` take a composed config (``compose``, or what
``hydra.main`` hands the CLIs in ``latentflow.train``, ``latentflow.evaluate`` and
``latentflow.sample``). Errors a user can fix are ``USER_ERRORS`` with one-line messages naming
the config key; the CLIs print them as ``latentflow-<tool>: error: ...``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.callbacks import Timer
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from latentflow.audio import AudioError
from latentflow.components import ComponentError, instantiate, is_node
from latentflow.config_checks import (
    ConfigError,
    validate_eval_config,
    validate_sample_config,
    validate_train_config,
)
from latentflow.data.download import DataError
from latentflow.lightning.checkpoint_io import CheckpointWriteError
from latentflow.runtime import (
    allocator,
    apply_runtime,
    resolve_precision,
    warn_slow_bf16_on_cpu,
)
from latentflow.tracking import build_loggers, check_logger_extras, finish_loggers

log = logging.getLogger("latentflow.run")
CONF_DIR = str(Path(__file__).resolve().parent / "conf")
USER_ERRORS = (ConfigError, DataError, ComponentError, CheckpointWriteError, AudioError)


# ----------------------------------------------------------------------------- configs
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


def data_info(datamodule: Any) -> dict[str, Any]:
    return {
        "kind": datamodule.kind,
        "num_features": int(datamodule.num_features),
        "max_length": int(datamodule.max_length),
    }


def tune_malloc_here(cfg: DictConfig) -> bool:
    """``runtime.tune_malloc``, applied only when the model runs on the CPU: the tuning keeps
    freed memory (peak RSS ~1.9x), a risk under a Slurm --mem limit and no gain for GPU runs."""
    return bool(cfg.runtime.get("tune_malloc", True)) and on_cpu(cfg)


def on_cpu(cfg: DictConfig) -> bool:
    """Whether the run's model is on the CPU (``trainer.accelerator``, else ``device``)."""
    trainer = cfg.get("trainer") or {}
    accelerator = str(trainer.get("accelerator") or cfg.get("device") or "cpu")
    if accelerator == "auto":
        return not torch.cuda.is_available()
    return accelerator == "cpu"


def build_datamodule(node: Any) -> Any:
    return instantiate(plain(node), "data")


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


# ----------------------------------------------------------------------------- trainer parts
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


def saved_progress(trainer: pl.Trainer, out_dir: Path) -> tuple[int, int]:
    """(epoch, global step) of the fit; spawned ranks (``ddp_spawn``) leave the parent's
    counters at 0, so then they come from ``last.ckpt``."""
    last = out_dir / "checkpoints" / "last.ckpt"
    if trainer.global_step == 0 and trainer.world_size > 1 and last.exists():
        from latentflow.rundir import read_checkpoint

        ckpt = read_checkpoint(last)
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


# ----------------------------------------------------------------------------- train
def resume_point(cfg: DictConfig, out_dir: Path) -> str | None:
    """The checkpoint a run continues from: ``ckpt_path``, ``auto`` (this run directory's
    last.ckpt, if any) or, in a requeued Slurm job, ``auto`` implicitly."""
    from latentflow.hydra_guard import resuming

    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path is None and resuming(ckpt_path):
        ckpt_path = "auto"  # a requeued Slurm job continues its own run directory
    if ckpt_path == "auto":
        last = out_dir / "checkpoints" / "last.ckpt"
        return str(last) if last.exists() else None
    return None if ckpt_path is None else str(ckpt_path)


def current_hparams(cfg: DictConfig) -> dict[str, Any]:
    """What a checkpoint of this config would store, for the settings a resume compares."""
    return {
        "components": components_of(cfg),
        "data_config": plain(cfg.data),
        "seed": cfg.seed,
        "anneal": plain(cfg.anneal),
        "elbo_samples": cfg.train.elbo_samples,
    }


def check_resume(cfg: DictConfig, ckpt_path: str, out_dir: Path) -> tuple[dict, str]:
    """Refuse, in one line and before anything is written, a checkpoint that cannot be read or
    was trained with other settings; (the checkpoint, why the run is already finished or "")."""
    from latentflow.rundir import changed_settings, clean_debris, finished, read_checkpoint

    ckpt = read_checkpoint(ckpt_path)
    changed = changed_settings(ckpt["hyper_parameters"], current_hparams(cfg))
    if changed:
        shown = "; ".join(changed[:6]) + (
            f"; and {len(changed) - 6} more" if len(changed) > 6 else ""
        )
        raise ConfigError(
            f"ckpt_path: {ckpt_path} was trained with other settings ({shown}): resuming would "
            "continue another run. Use a new run directory, or the checkpoint's settings"
        )
    if rank_zero_only.rank == 0 and Path(ckpt_path).parent == out_dir / "checkpoints":
        clean_debris(out_dir / "checkpoints", ckpt)
    return ckpt, finished(out_dir, ckpt, plain(cfg.trainer))


def stop_reason(trainer: pl.Trainer, timer: Timer) -> str:
    """Why the fit ended: early_stopping, max_time, max_steps or max_epochs."""
    from pytorch_lightning.callbacks import EarlyStopping

    if any(isinstance(c, EarlyStopping) and c.stopped_epoch > 0 for c in trainer.callbacks):
        return "early_stopping"
    if timer._duration is not None and timer.time_remaining("train") is not None:
        if timer.time_remaining("train") <= 0:
            return "max_time"
    if trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps:
        return "max_steps"
    return "max_epochs"


def train(
    cfg: DictConfig, extra_callbacks: list[pl.Callback] | tuple[pl.Callback, ...] = ()
) -> tuple[float | None, dict[str, Any]]:
    """Fit and evaluate; returns (monitored metric, metrics.json payload).

    The run directory is locked for the run's life (``latentflow.rundir``); a resume is checked
    against the checkpoint before anything is written; a run that is already finished returns
    its metrics.json and changes nothing. ``extra_callbacks`` join the config's ``callbacks``
    (Python use: a notebook's own hooks).
    """
    from latentflow.hydra_guard import holds_lock, resuming
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
    lock = RunLock(out_dir) if mine else contextlib.nullcontext()
    with lock:
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
        return _fit_and_evaluate(cfg, out_dir, datamodule, ckpt_path, list(extra_callbacks))


def _fit_and_evaluate(
    cfg: DictConfig,
    out_dir: Path,
    datamodule: Any,
    ckpt_path: str | None,
    extra_callbacks: list[pl.Callback],
) -> tuple[float | None, dict[str, Any]]:
    pl.seed_everything(cfg.seed, workers=True)
    datamodule.prepare_data()
    datamodule.setup("fit")
    log.info("data: %s", datamodule.describe())

    module = build_module(cfg, datamodule)
    components = module.hparams["components"]
    compile_cfg = cfg.get("compile") or {}
    if compile_cfg.get("flows"):
        from latentflow.models.compile import compile_flows

        backend = compile_cfg.get("backend", "inductor")
        names = compile_flows(module.net, backend, compile_cfg.get("mode"))
        log.info("torch.compile (%s): %s", backend, ", ".join(names) or "no flow stacks")
    n_params = sum(p.numel() for p in module.parameters())
    log.info("model: %s, %.2fM parameters", model_name(components), n_params / 1e6)

    from latentflow.lightning.callbacks import PhaseTimer, ResumeDataOrder
    from latentflow.runtime import process_start_time

    callbacks = [*instantiate_dict(cfg.get("callbacks"), "callbacks"), ResumeDataOrder()]
    callbacks.append(PhaseTimer(str(out_dir / "timing.csv"), process_start_time()))
    callbacks += extra_callbacks
    if cfg.trainer.get("max_time") is None and not any(isinstance(c, Timer) for c in callbacks):
        callbacks.append(Timer())  # training time, kept in checkpoints across resumes
    trainer: pl.Trainer | None = None
    try:
        trainer = build_trainer(cfg, callbacks)
        if ckpt_path:
            log.info("resuming from %s", ckpt_path)
            # Resuming into its own run directory: the checkpoints there are expected.
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* is not empty")
        start = time.time()
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        # Over every process of a resumed run, up to its last checkpoint before this one; this
        # process's wall clock where the fit ran elsewhere (spawned ranks keep their Timer).
        timer = next(c for c in trainer.callbacks if isinstance(c, Timer))
        ran_here = timer.start_time("train") is not None
        train_time = timer.time_elapsed("train") if ran_here else time.time() - start
        reason = stop_reason(trainer, timer)

        best = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
        if trainer.checkpoint_callback is not None and best is None and trainer.world_size == 1:
            raise FloatingPointError(
                f"no validation of this run gave a finite {cfg.monitor}: nothing it learned is "
                "usable, so no best checkpoint was written (lower optimizer.lr, check the data)"
            )
        splits = ["val", "test"] if cfg.get("test", True) else ["val"]
        eval_start = time.time()
        metrics = evaluate_best(trainer, module, datamodule, best, cfg.seed, splits)
        final_eval_time = time.time() - eval_start
    finally:
        finish_loggers(trainer)
    epochs, global_step = saved_progress(trainer, out_dir)
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
        "parameters": n_params,
        "seed": cfg.seed,
        "paper": plain(cfg.paper) if cfg.get("paper") else {},
        **metrics,
    }
    if trainer.is_global_zero:
        write_json(out_dir / "metrics.json", payload)
        log.info("metrics: %s", json.dumps({k: payload.get(k) for k in splits}, default=float))
    value = metrics.get("val", {}).get(cfg.monitor.split("/", 1)[-1])
    return (value if value is not None and math.isfinite(value) else None), payload


def build_trainer(cfg: DictConfig, callbacks: list[pl.Callback]) -> pl.Trainer:
    """The Trainer of ``cfg.trainer``; Lightning's refusals are one-line ConfigErrors."""
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    factory = instantiate({**plain(cfg.trainer), "_partial_": True}, "trainer")
    try:
        return factory(
            callbacks=callbacks, logger=build_loggers(cfg) or False, plugins=build_plugins()
        )
    except MisconfigurationException as err:
        raise ConfigError(f"trainer: {str(err).splitlines()[0]}") from None


# ----------------------------------------------------------------------------- checkpoints
def load_module(
    ckpt_path: str | Path, map_location: str = "cpu", trust_components: Any = ()
) -> Any:
    """The LightningModule stored in a checkpoint, rebuilt from its saved hyperparameters
    (no YAML); a file that is not a readable latentflow checkpoint is one ConfigError.

    Opening it runs no code the checkpoint names: it is unpickled with ``weights_only=True``
    and its component targets are built only when they are latentflow's (or torch's
    optimizers) or under a module prefix in ``trust_components`` (e.g. ``["my_pkg"]``)."""
    from latentflow.components import check_trusted
    from latentflow.lightning.module import SequenceLitModule
    from latentflow.rundir import read_checkpoint

    ckpt = read_checkpoint(ckpt_path)
    hparams = ckpt["hyper_parameters"]
    trusted = [str(t) for t in (trust_components or [])]
    for key in ("components", "data_config"):
        check_trusted(hparams.get(key), "" if key == "components" else "data", trusted)
    try:
        module = SequenceLitModule(**ckpt["hyper_parameters"])
        module.load_state_dict(ckpt["state_dict"])
        module.on_load_checkpoint(ckpt)
    except ComponentError:
        raise
    except (RuntimeError, KeyError, ValueError, TypeError) as err:
        detail = str(err).splitlines()[0][:200]
        raise ConfigError(
            f"ckpt_path: {ckpt_path} does not fit its own model ({detail})"
        ) from None
    return module.to(map_location)


def check_finite_weights(module: Any, ckpt_path: Any) -> None:
    """A checkpoint whose weights hold NaN or inf (a diverged run saved as it was) is one line:
    evaluating it would print ``nll: NaN``, sampling from it garbage or a traceback."""
    bad = [n for n, p in module.named_parameters() if not p.isfinite().all()]  # not p(T): -inf
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise ConfigError(
            f"ckpt_path: {ckpt_path} holds non-finite weights ({', '.join(bad[:3])}{more}): the "
            "run that wrote it diverged; use an earlier checkpoint (best-*.ckpt)"
        )


def datamodule_from_checkpoint(module: Any, overrides: dict[str, Any]) -> Any:
    """The datamodule the model was trained on, with loader/root settings overridden."""
    data_cfg = dict(module.hparams.get("data_config") or {})
    if not data_cfg:
        raise ConfigError("ckpt_path: the checkpoint stores no data config (data_config)")
    import inspect

    from latentflow.components import locate

    takes = inspect.signature(locate(data_cfg.get("_target_"), "data")).parameters
    # loader and root settings, where this datamodule has them (own data has no data root)
    data_cfg.update({k: v for k, v in overrides.items() if v is not None and k in takes})
    datamodule = build_datamodule(data_cfg)
    datamodule.prepare_data()
    datamodule.setup("validate")
    vocab = module.hparams.get("vocab")
    if vocab is not None and list(datamodule.vocab.symbols) != list(vocab):
        raise DataError("the data's vocabulary differs from the one stored in the checkpoint")
    return datamodule


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Re-evaluate a checkpoint on the splits ``cfg.splits``; writes and returns metrics.json."""
    validate_eval_config(cfg)
    apply_runtime(cfg.runtime.get("threads"), tune_malloc_here(cfg))
    splits = list(cfg.splits)
    module = load_module(cfg.ckpt_path, trust_components=cfg.get("trust_components"))
    check_finite_weights(module, cfg.ckpt_path)
    if cfg.eval.get("num_samples") is not None:
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


# ----------------------------------------------------------------------------- sample
def sample(cfg: DictConfig) -> dict[str, Any]:
    """Load the checkpoint, draw ``cfg.num_samples`` sequences, write them; returns the
    ``samples.json`` payload (``latentflow.generation``)."""
    from latentflow.generation import draw_lengths, generate, write_samples

    validate_sample_config(cfg)
    apply_runtime(cfg.runtime.get("threads"), tune_malloc_here(cfg))
    module = load_module(cfg.ckpt_path, trust_components=cfg.get("trust_components"))
    check_finite_weights(module, cfg.ckpt_path)
    net = module.net.to(cfg.device)
    hp = module.hparams
    text = hp["data"]["kind"] == "text"
    if text and not hp.get("vocab"):
        raise ConfigError(f"ckpt_path: {cfg.ckpt_path} stores no vocabulary to decode text")
    if (cfg.get("audio") or {}).get("enabled"):  # decided before any sampling work
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


# ----------------------------------------------------------------------------- start-up checks
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


def build_recipe_net(
    overrides: list[str], data: dict[str, Any], length_distribution: Any = None
) -> torch.nn.Module:
    """The model a training run with ``overrides`` builds, for data of ``data``'s sizes
    (``kind``, ``num_features``, ``max_length``): for benchmarks, notebooks and scripts."""
    from latentflow.models.build import build_net

    return build_net(components_of(compose(overrides)), data, length_distribution)


# ----------------------------------------------------------------------------- command lines
class TrialFailed(Exception):
    """A trial of a sweep that failed with a user-level error: Hydra records it as a failed
    job (an ``Exception``, where ``SystemExit`` would end the whole sweep), the Optuna sweeper
    as a failed trial (tolerated up to ``max_failure_rate``); the sweep goes on."""

    @classmethod
    def record(cls, run_dir: Path, err: Exception) -> TrialFailed:
        """Write ``failed.json`` (the error and the trial's overrides) in its run directory."""
        from hydra.core.hydra_config import HydraConfig

        overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
        run_dir.mkdir(parents=True, exist_ok=True)
        payload = {"error": str(err), "type": type(err).__name__, "overrides": overrides}
        write_json(run_dir / "failed.json", payload)
        return cls(f"{err} (trial {' '.join(overrides)})")


def in_sweep() -> bool:
    """Whether this process runs a job of a Hydra multirun."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


EXTRA_HINTS = {  # a config that needs an optional extra -> the one line that says which
    "submitit": "the Slurm launcher needs the slurm extra: pip install 'latentflow[slurm]'",
    "optuna": "the Optuna sweeper needs the sweep extra: pip install 'latentflow[sweep]'",
}


def unknown_recipe(name: str) -> str:
    """``experiment=<name>`` names no recipe: the recipes of the folder it points into."""
    root = Path(CONF_DIR) / "experiment"
    folder = root / Path(name).parent
    while not folder.is_dir() and folder != root:
        folder = folder.parent
    entries = sorted(
        str((p.relative_to(root)).with_suffix("")) + ("/..." if p.is_dir() else "")
        for p in folder.iterdir()
        if not p.name.startswith("_") and (p.is_dir() or p.suffix == ".yaml")
    )
    return f"experiment={name}: no such recipe (available: {', '.join(entries)})"


def one_line(err: BaseException) -> str:
    """A Hydra/OmegaConf error message (several lines, indented details) as one line."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    skip = ("full_key:", "object_type=", "reference_type=", "Set the environment variable")
    lines = [ln for ln in lines if not ln.startswith(skip)]
    if "Config search path:" in lines:
        lines = lines[: lines.index("Config search path:")]
    if any(ln.startswith("Available options") for ln in lines):
        i = next(i for i, ln in enumerate(lines) if ln.startswith("Available options"))
        lines = [*lines[:i], f"(available: {', '.join(lines[i + 1 :])})"]
    text = " ".join(lines) or type(err).__name__
    recipe = re.search(r"Could not find '(experiment/[^']*)'", text)
    if recipe:
        return unknown_recipe(recipe[1].removeprefix("experiment/"))
    missing = ("Could not find", "Could not load", "No module named")
    for needle, hint in EXTRA_HINTS.items():
        if needle in text and any(m in text for m in missing):
            return f"{text}: {hint}"
    return text


def run_cli(main: Any, prog: str) -> None:
    """Run a ``hydra.main`` function so that configuration errors Hydra or OmegaConf raise
    (an unknown key or option, a bad override) end in one ``prog: error:`` line, exit 2, like
    the errors latentflow raises itself. ``HYDRA_FULL_ERROR=1`` in the environment keeps
    Hydra's own report (with its traceback)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if os.environ.get("HYDRA_FULL_ERROR"):
        main()
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let the errors reach this frame
    try:
        main()
    except (HydraException, OmegaConfBaseException) as err:
        print(f"{prog}: error: {one_line(err)}", file=sys.stderr)
        raise SystemExit(2) from None
    except USER_ERRORS as err:  # raised before the task function (the run-directory guard)
        print(f"{prog}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except TrialFailed as err:  # the basic sweeper re-raises the first failed job at the end
        print(
            f"{prog}: error: the sweep ran every trial, but some failed (each has failed.json "
            f"in its directory); the first: {err}",
            file=sys.stderr,
        )
        raise SystemExit(1) from None
    finally:
        os.environ.pop("HYDRA_FULL_ERROR", None)
