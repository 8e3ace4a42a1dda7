"""The thin Lightning layer over the pure-PyTorch core. Which module owns what:

* ``module``: ``SequenceLitModule``, the LightningModule (ELBO training, evaluation, sampling).
* ``anneal``: ``KLSchedule``, the KL weight as a function of epoch, batch and step.
* ``lr_schedule``: ``PlateauLRDecay``, the validation-driven learning-rate decay.
* ``early_stopping``: ``EarlyStoppingAfter``, early stopping that waits out the KL annealing.
* ``checkpoints``: ``BestCheckpoint``, ``StepCheckpoint``, ``PreemptionCheckpoint``.
* ``data_order``: ``ResumeDataOrder``, a resumed epoch continues at the batch it was cut at.
* ``timing``: ``PhaseTimer``, where a run's wall time goes (``timing.csv``).
* ``sample_logging``: ``SampleLogger``, samples shown in W&B or TensorBoard.
* ``callbacks``: all the callbacks above under the import path configs and checkpoints name.
* ``checkpoint_io``: the safe checkpoint loader and atomic, timed checkpoint writes.
* ``distributed``: the DDP strategy the trainer configs build.
* ``internals``: the one module that touches Lightning's private API.
"""

from latentflow.lightning.anneal import KLSchedule
from latentflow.lightning.module import SequenceLitModule

__all__ = ["KLSchedule", "SequenceLitModule"]
