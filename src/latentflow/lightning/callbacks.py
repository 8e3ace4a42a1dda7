"""latentflow's callbacks under the import path that configs and saved checkpoints name
(``_target_: latentflow.lightning.callbacks.BestCheckpoint``). Each lives in the module of its
purpose: ``checkpoints``, ``data_order``, ``sample_logging``, ``timing``.
"""

from latentflow.lightning.checkpoints import BestCheckpoint, PreemptionCheckpoint, StepCheckpoint
from latentflow.lightning.data_order import POSITION_KEY, ResumeDataOrder
from latentflow.lightning.sample_logging import SampleLogger, piano_roll_image
from latentflow.lightning.timing import PhaseTimer

__all__ = [
    "POSITION_KEY",
    "BestCheckpoint",
    "PhaseTimer",
    "PreemptionCheckpoint",
    "ResumeDataOrder",
    "SampleLogger",
    "StepCheckpoint",
    "piano_roll_image",
]
