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

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig
from pytorch_lightning.utilities.exceptions import SIGTERMException

from latentflow.cli import run_cli, run_task
from latentflow.configs import CONF_DIR
from latentflow.run import train


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    """One run; under ``-m`` one trial of a sweep, whose failure is recorded (``failed.json``
    in its directory) and raised as ``TrialFailed`` for the sweeper, so the sweep goes on."""
    try:
        value, payload = run_task("latentflow-train", train, cfg)
    except SIGTERMException:
        last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
        print(
            f"latentflow-train: stopped by SIGTERM; resume with ckpt_path={last}",
            file=sys.stderr,
        )
        raise SystemExit(128 + 15) from None
    if payload.get("already_finished"):
        print(
            f"latentflow-train: {cfg.paths.output_dir} is already finished "
            f"({payload['already_finished']}); nothing to do",
            file=sys.stderr,
        )
    return value


def cli() -> None:
    """The ``latentflow-train`` command: ``main`` with one-line configuration errors."""
    study = next((a for a in sys.argv[1:] if a.lstrip("+~").startswith("hparams_search=")), None)
    if study is not None:  # a study owns its trials: latentflow.sweep, not a Hydra sweeper
        print(
            f"latentflow-train: error: {study}: a study runs with latentflow-sweep (the same "
            "arguments, without -m)",
            file=sys.stderr,
        )
        raise SystemExit(2)
    run_cli(main, "latentflow-train")


if __name__ == "__main__":
    cli()
