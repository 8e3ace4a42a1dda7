"""``latentflow-sweep``: an Optuna study whose trials are training runs, pruned when they lag.

    latentflow-sweep hparams_search=optuna experiment=cpu/jsb/af_af
    latentflow-sweep hparams_search=optuna experiment=cpu/jsb/af_af pruner=hyperband
    sbatch --array=1-8 --wrap "latentflow-sweep hparams_search=optuna experiment=ptb/af_af"
    latentflow-sweep --summary outputs/sweeps/cpu/jsb/af_af

Every process started with the same arguments is a worker of the same study (its directory
and storage: ``latentflow.study``): it takes the next trial, runs it as a normal run in
``<sweep dir>/<trial>/`` (``config.yaml``, ``metrics.json``, checkpoints) with
``PruneLagging`` reporting ``val/nll`` after each validation, and stops when the study's
``sweep.n_trials`` are done. A trial's value is ``val/nll`` of its best checkpoint. A trial
that fails is recorded (its one-line error in ``failed.json`` and in the study) and the study
goes on; a worker killed or preempted mid-trial leaves its trial to be retried from its
checkpoint by the next worker that looks (``study.reap_dead``).

Why a command of its own and not ``latentflow-train -m``: under ``-m`` a Hydra sweeper plugin
owns the trial object and launches the runs, so a run can neither report its curve nor be
pruned (https://github.com/ashleve/lightning-hydra-template/issues/176); here the worker owns
the trial and calls ``latentflow.run.train`` with the pruning callback. ``-m`` keeps Hydra's
own grid and list multiruns.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, open_dict

from latentflow.cli import USER_ERRORS, one_line, run_cli
from latentflow.configs import compose, plain
from latentflow.hydra_guard import HELD
from latentflow.pruning import PruneLagging
from latentflow.rundir import RunLock, write_json
from latentflow.search_space import override_text, parse_space, suggest
from latentflow.study import (
    LOCKED_BY,
    SURPLUS,
    budget,
    frozen,
    is_surplus,
    open_study,
    reap_dead,
    retry,
    sweep_dir,
    trial_dir,
    validate_sweep_config,
    worker_label,
)

PROG = "latentflow-sweep"
log = logging.getLogger("latentflow.sweep")


class Worker:
    """One process's share of a study: trials taken one at a time until the study is done."""

    def __init__(self, cfg: DictConfig, overrides: list[str], config_dir: str | None) -> None:
        self.cfg, self.overrides, self.config_dir = cfg, overrides, config_dir
        self.dir = sweep_dir(cfg)
        self.space = parse_space(plain(cfg.sweep.get("params")))
        self.n_trials = int(cfg.sweep.n_trials)
        self.max_retry = int(cfg.sweep.max_retry)
        self.study = open_study(cfg, self.dir)
        self.ran = 0

    def run(self) -> None:
        """Take trials until every slot is done; wait while others run the last ones (one of
        them may die and need a retry)."""
        log.info("worker %s on study %s in %s", worker_label(), self.study.study_name, self.dir)
        while True:
            reap_dead(self.study, self.dir, self.max_retry)
            state = budget(self.study)
            if state.waiting or state.used < self.n_trials:
                self.take_trial()
            elif state.running:
                time.sleep(float(self.cfg.sweep.poll_s))
            else:
                break
        log.info("study done: this worker ran %d trials", self.ran)

    def take_trial(self) -> None:
        from optuna.trial import TrialState

        trial = self.study.ask()
        if is_surplus(self.study, trial.number, self.n_trials):
            trial.set_user_attr(SURPLUS, True)
            self.study.tell(trial, state=TrialState.FAIL)
            return
        run_dir = trial_dir(self.dir, frozen(self.study, trial.number))
        lock = RunLock(run_dir).__enter__()
        HELD.add(os.path.realpath(run_dir))
        try:
            trial.set_user_attr(LOCKED_BY, trial.number)
            trial.set_user_attr("worker", worker_label())
            self.ran += 1
            self.run_trial(trial, run_dir)
        finally:
            HELD.discard(os.path.realpath(run_dir))
            lock.__exit__(None, None, None)

    def run_trial(self, trial: Any, run_dir: Path) -> None:
        """Train the trial's run; tell the study how it ended."""
        import optuna
        from optuna.trial import TrialState
        from pytorch_lightning.utilities.exceptions import SIGTERMException

        from latentflow.run import train

        reports = frozen(self.study, trial.number).intermediate_values
        pruning = PruneLagging(trial, str(self.cfg.monitor), max(reports, default=-1))
        handler = trial_log(run_dir)
        try:
            overrides = [override_text(k, v) for k, v in suggest(trial, self.space).items()]
            trial.set_user_attr("overrides", overrides)
            log.info("trial %d: %s", trial.number, " ".join(overrides))
            value, _ = train(self.trial_config(overrides, run_dir, trial.number), [pruning])
            if value is None:
                raise FloatingPointError(f"no finite {self.cfg.monitor} to report")
            self.study.tell(trial, value)
        except optuna.TrialPruned as pruned:
            write_json(run_dir / "pruned.json", {"reason": str(pruned), "trial": trial.number})
            self.study.tell(trial, state=TrialState.PRUNED)
        except SIGTERMException:  # preempted: its last.ckpt is written; a retry resumes it
            self.study.tell(trial, state=TrialState.FAIL)
            retry(self.study, trial.number, self.max_retry)
            raise
        except (*USER_ERRORS, FloatingPointError, Exception) as err:
            self.record_failure(trial, run_dir, err)
        finally:
            logging.getLogger().removeHandler(handler)
            handler.close()

    def record_failure(self, trial: Any, run_dir: Path, err: BaseException) -> None:
        from optuna.trial import TrialState

        user_error = isinstance(err, (*USER_ERRORS, FloatingPointError))
        line = one_line(err) if user_error else f"{type(err).__name__}: {one_line(err)}"
        if not user_error:
            log.exception("trial %d failed", trial.number)
        print(f"{PROG}: trial {trial.number} failed: {line}", file=sys.stderr)
        overrides = trial.user_attrs.get("overrides", [])
        payload = {"error": line, "type": type(err).__name__, "overrides": overrides}
        write_json(run_dir / "failed.json", payload)
        trial.set_user_attr("error", line[:1000])
        self.study.tell(trial, state=TrialState.FAIL)

    def trial_config(self, overrides: list[str], run_dir: Path, number: int) -> DictConfig:
        """The trial's run config: the sweep's arguments, then the trial's values; resumed
        from its own last.ckpt (a retried trial); W&B runs grouped by study."""
        cfg = compose(
            [*self.overrides, *overrides],
            config_name="sweep",
            output_dir=run_dir,
            config_dir=self.config_dir,
        )
        with open_dict(cfg):
            cfg.ckpt_path = "auto"
            wandb = (cfg.get("logger") or {}).get("wandb")
            if wandb is not None:
                wandb.group = self.study.study_name
                wandb.tags = [*(wandb.get("tags") or []), f"trial-{number}"]
        return cfg


def trial_log(run_dir: Path) -> logging.Handler:
    """The trial's ``train.log`` (as a Hydra run's), attached to the root logger."""
    run_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(run_dir / "train.log")
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] %(message)s"))
    logging.getLogger().addHandler(handler)
    return handler


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run (a worker of) an Optuna study of training runs, or summarise one.",
    )
    parser.add_argument("overrides", nargs="*", help="hparams_search=<study> and run overrides")
    parser.add_argument("--summary", metavar="DIR", help="summarise the study in DIR, and plot")
    parser.add_argument("--top", type=int, default=5, help="best trials the summary lists")
    parser.add_argument("--config-dir", help="a folder of your own configs (as Hydra's)")
    return parser.parse_intermixed_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Summarise a study (``--summary``), or work on one until it is done, then summarise."""
    from latentflow.sweep_report import report

    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")
    if args.summary:
        print(report(Path(args.summary), args.top))
        return
    cfg = compose(args.overrides, config_name="sweep", config_dir=args.config_dir)
    validate_sweep_config(cfg)
    worker = Worker(cfg, args.overrides, args.config_dir)
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    try:
        worker.run()
    except SIGTERMException:  # preempted: its trial is handed over (run_trial)
        print(f"{PROG}: stopped by SIGTERM; its trial will be retried", file=sys.stderr)
        raise SystemExit(128 + 15) from None
    print(report(worker.dir, int(cfg.sweep.top)))


def cli() -> None:
    """The ``latentflow-sweep`` command: one-line errors for what a user can fix."""
    run_cli(main, PROG)


if __name__ == "__main__":
    cli()
