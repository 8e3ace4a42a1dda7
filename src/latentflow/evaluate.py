"""``latentflow-eval ckpt_path=...``: rebuild a model from its checkpoint alone (no YAML) and
write its validation/test metrics (``metrics.json`` in this run's directory).

    latentflow-eval ckpt_path=outputs/train/<run>/checkpoints/last.ckpt
    latentflow-eval ckpt_path=... eval.num_samples=200 splits=[test]
"""

from __future__ import annotations

import hydra
import torch
from omegaconf import DictConfig

from latentflow.cli import run_cli, run_task
from latentflow.configs import CONF_DIR
from latentflow.run import evaluate


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    torch.set_grad_enabled(False)
    run_task("latentflow-eval", evaluate, cfg)


def cli() -> None:
    """The ``latentflow-eval`` command: ``main`` with one-line configuration errors."""
    run_cli(main, "latentflow-eval")


if __name__ == "__main__":
    cli()
