"""The thin Lightning layer: the LightningModule, KL schedules and callbacks."""

from latentflow.lightning.anneal import KLSchedule
from latentflow.lightning.module import SequenceLitModule

__all__ = ["KLSchedule", "SequenceLitModule"]
