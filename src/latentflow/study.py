"""A study several workers share: its storage, its trial budget, and the trials of workers
that died.

Storage (``sweep.storage``): ``journal`` (default; ``<sweep dir>/study.journal``, Optuna's
journal file, safe for processes on several nodes of one shared filesystem), ``sqlite``
(``<sweep dir>/optuna.db``, for the processes of one node) or an RDB URL (a database server).

The budget: ``sweep.n_trials`` trial *slots*. A trial retried after its worker died is a new
Optuna trial with the same parameters and the same run directory (Optuna's
``RetryFailedTrialCallback`` records the first trial's number, its ``root``); it resumes the
checkpoint there and takes no new slot. So every slot is counted once, however many workers
ran it. A trial two workers asked for at the same instant past the budget is closed at once
as FAIL with the user attribute ``surplus`` and is counted nowhere.

A dead worker's trial: every trial's run directory is locked (``rundir.RunLock``, an ``flock``
the kernel releases when its process dies) by the worker that runs it. A RUNNING trial whose
directory can be locked has no worker: it is marked FAIL and retried (``reap_dead``).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from latentflow.config_checks import ConfigError, validate_train_config
from latentflow.configs import plain
from latentflow.rundir import RunLock
from latentflow.schema import check_keys
from latentflow.search_space import grid_of, parse_space

log = logging.getLogger("latentflow.sweep")
LOCKED_BY = "locked_by"  # user attribute: the trial number whose worker locked the directory
SURPLUS = "surplus"
UNCLAIMED_S = 300  # a RUNNING trial that never locked its directory is dead after this


def validate_sweep_config(cfg: DictConfig) -> None:
    """``latentflow-sweep``: the study's settings and a trial's, checked before anything is
    written."""
    if cfg.get("sweep") is None:
        raise ConfigError("hparams_search: choose a study, e.g. hparams_search=optuna")
    check_keys(cfg, "sweep")
    validate_train_config(cfg)
    parse_space(plain(cfg.sweep.get("params")))
    storage = str(cfg.sweep.storage)
    if storage not in ("journal", "sqlite") and "://" not in storage:
        raise ConfigError(f"sweep.storage must be journal, sqlite or a URL, got {storage!r}")


def study_name(cfg: DictConfig) -> str:
    """``sweep.study_name``, else the recipe's name (``experiment_name``), else ``study``."""
    return str(cfg.sweep.get("study_name") or cfg.get("experiment_name") or "study")


def sweep_dir(cfg: DictConfig) -> Path:
    """``sweep.dir``, else ``<paths.log_dir>/sweeps/<study name>``: the same for every worker."""
    chosen = cfg.sweep.get("dir") or Path(cfg.paths.log_dir) / "sweeps" / study_name(cfg)
    return Path(chosen).absolute()


def storage_of(kind: str, directory: Path) -> Any:
    """The study's Optuna storage (module docstring)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if kind == "journal":
        return optuna.storages.JournalStorage(JournalFileBackend(str(directory / "study.journal")))
    url = f"sqlite:///{directory / 'optuna.db'}" if kind == "sqlite" else kind
    engine = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else None
    return optuna.storages.RDBStorage(url, engine_kwargs=engine)


def find_storage(directory: Path) -> Any:
    """The storage a sweep directory holds (for ``--summary``)."""
    for kind, name in (("journal", "study.journal"), ("sqlite", "optuna.db")):
        if (directory / name).is_file():
            return storage_of(kind, directory)
    raise ConfigError(f"--summary: {directory} holds no study (study.journal or optuna.db)")


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path``, waited for."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def open_study(cfg: DictConfig, directory: Path) -> Any:
    """Create or load the study; the first worker enqueues ``sweep.enqueue`` (under a lock, so
    that concurrent workers enqueue it once)."""
    import optuna

    from latentflow.components import instantiate

    space = parse_space(plain(cfg.sweep.get("params")))
    sampler_node = dict(plain(cfg.sweep.sampler) or {"_target_": "optuna.samplers.TPESampler"})
    if str(sampler_node["_target_"]).endswith("GridSampler"):
        sampler_node["_target_"] = "latentflow.study.StudyGridSampler"
        sampler_node.setdefault("search_space", grid_of(space))
    directory.mkdir(parents=True, exist_ok=True)
    with file_lock(directory / "study.lock"):
        study = optuna.create_study(
            study_name=study_name(cfg),
            storage=storage_of(str(cfg.sweep.storage), directory),
            sampler=instantiate(sampler_node, "sweep.sampler"),
            pruner=instantiate(plain(cfg.sweep.pruner), "sweep.pruner"),
            direction=str(cfg.sweep.direction),
            load_if_exists=True,
        )
        if not study.get_trials(deepcopy=False):
            for params in plain(cfg.sweep.get("enqueue")) or []:
                study.enqueue_trial(dict(params))
    return study


def grid_sampler_class() -> type:
    """Optuna's GridSampler, without the ``Study.stop()`` it calls once the grid is used up:
    outside ``Study.optimize`` (the workers ask and tell) that call raises. ``n_trials`` ends
    a study; a used-up grid samples its points again, at random."""
    from optuna.samplers import GridSampler

    class StudyGridSampler(GridSampler):
        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            return

    return StudyGridSampler


def StudyGridSampler(*args: Any, **kwargs: Any) -> Any:  # noqa: N802  a `_target_`
    """``sweep.sampler`` GridSampler, as the workers use it (``grid_sampler_class``)."""
    return grid_sampler_class()(*args, **kwargs)


def root_of(trial: Any) -> int:
    """The number of the first trial of ``trial``'s retries (its own number if none)."""
    return int(trial.system_attrs.get("failed_trial", trial.number))


def retried(trials: list[Any]) -> set[int]:
    """The numbers of the trials that a later trial retries."""
    return {n for t in trials for n in t.system_attrs.get("retry_history", [])}


@dataclass(frozen=True)
class Budget:
    """Where a study stands: slots taken, trials waiting to start, trials running."""

    used: int
    waiting: int
    running: int


def budget(study: Any) -> Budget:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    counted = [t for t in trials if not t.user_attrs.get(SURPLUS)]
    return Budget(
        used=len({root_of(t) for t in counted}),
        waiting=sum(t.state == TrialState.WAITING for t in counted),
        running=sum(t.state == TrialState.RUNNING for t in counted),
    )


def is_surplus(study: Any, number: int, n_trials: int) -> bool:
    """Whether the trial ``number`` takes a slot past ``n_trials`` (module docstring)."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.number <= number]
    roots = {root_of(t) for t in trials if not t.user_attrs.get(SURPLUS)}
    return len(roots) > n_trials


def frozen(study: Any, number: int) -> Any:
    """The stored state of the trial ``number``."""
    return next(t for t in study.get_trials(deepcopy=False) if t.number == number)


def retry(study: Any, number: int, max_retry: int) -> None:
    """Enqueue a retry of the (failed) trial ``number``: same parameters, the reports it made,
    the same run directory, at most ``max_retry`` times per slot."""
    from optuna.storages import RetryFailedTrialCallback

    callback = RetryFailedTrialCallback(max_retry, inherit_intermediate_values=True)
    callback(study, frozen(study, number))


def trial_dir(directory: Path, trial: Any) -> Path:
    return directory / str(root_of(trial))


def reap_dead(study: Any, directory: Path, max_retry: int) -> int:
    """Fail and retry the RUNNING trials no worker holds; how many there were."""
    from optuna.trial import TrialState

    now = datetime.datetime.now()
    reaped = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        claimed = t.user_attrs.get(LOCKED_BY) == t.number
        started = t.datetime_start or now
        if not claimed and (now - started).total_seconds() < UNCLAIMED_S:
            continue  # just asked: its worker is about to lock the directory
        try:
            lock = RunLock(trial_dir(directory, t)).__enter__()
        except ConfigError:
            continue  # a live worker holds it
        try:
            if frozen(study, t.number).state == TrialState.RUNNING:
                log.warning("trial %d lost its worker: retried from its checkpoint", t.number)
                study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
                retry(study, t.number, max_retry)
                reaped += 1
        finally:
            lock.__exit__(None, None, None)
    return reaped


def worker_label() -> str:
    """This worker, for the log: host, pid and the Slurm array task where there is one."""
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{os.uname().nodename}:{os.getpid()}" + (f" (array task {task})" if task else "")
