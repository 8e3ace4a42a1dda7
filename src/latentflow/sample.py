"""``latentflow-sample ckpt_path=...``: draw sequences from a trained model (checkpoint alone).

    latentflow-sample ckpt_path=outputs/train/<run>/checkpoints/last.ckpt num_samples=20
    latentflow-sample ckpt_path=... length=100 seed=3 temperature=0.8
    latentflow-sample ckpt_path=... argmax=true device=cuda
    latentflow-sample ckpt_path=... audio=on audio.format=flac   # music: hear it (FluidSynth)

Lengths are drawn from the model's p(T) unless ``length`` is given; then z ~ p(z | T) and
x ~ p(x | z, T) (a real draw; ``argmax=true`` takes the mode), or ancestral sampling for the
LSTM baseline. What is written: ``latentflow.generation``.
"""

from __future__ import annotations

import sys

import hydra
import torch
from omegaconf import DictConfig

from latentflow.cli import run_cli, run_task
from latentflow.configs import CONF_DIR
from latentflow.run import sample


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="sample")
def main(cfg: DictConfig) -> None:
    torch.set_grad_enabled(False)
    run_task("latentflow-sample", sample, cfg)


def cli() -> None:
    """The ``latentflow-sample`` command: ``main`` with one-line configuration errors.
    ``audio=true``/``false`` are spellings of the ``audio`` group's ``on``/``off`` (Hydra reads
    a bare true as a boolean, which cannot name a group option)."""
    spelled = {"audio=true": "audio=on", "audio=false": "audio=off"}
    sys.argv[1:] = [spelled.get(arg.lower(), arg) for arg in sys.argv[1:]]
    run_cli(main, "latentflow-sample")


if __name__ == "__main__":
    cli()
