"""The DDP strategy the ``trainer=ddp`` / ``trainer=ddp_cpu`` configs build.

Lightning's plain ``"ddp"`` wraps the module in ``DistributedDataParallel`` with buffer
broadcasting on: the first forward pass after every training step broadcasts the buffers from
rank 0. Validation runs through that wrapper, and our length-bucketed evaluation sampler may
give a rank no batch at all (a small split, a large eval batch); that rank never joins the
broadcast, which then pairs with the next collective (the metric sums' all-gather) and hangs or
corrupts it. No buffer here needs syncing (MADE masks and p(T) are constants; the non-finite
counter is equal on every rank because gradients are all-reduced before it is read), so the
strategy turns forward buffer syncing off.
"""

from __future__ import annotations

import inspect
from typing import Any

from pytorch_lightning.plugins.environments import SLURMEnvironment, TorchElasticEnvironment
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.utilities.rank_zero import rank_zero_info
from torch.nn.parallel import DistributedDataParallel


def _no_buffer_sync() -> dict[str, bool]:
    # torch 2.13 renamed the flag (broadcast_buffers now warns); both keep the init-time sync.
    params = inspect.signature(DistributedDataParallel.__init__).parameters
    if "forward_sync_buffers" in params:
        return {"forward_sync_buffers": False}
    return {"broadcast_buffers": False}


def ddp_strategy(start_method: str = "popen", **kwargs: Any) -> DDPStrategy:
    """``DDPStrategy`` without forward buffer syncing (module docstring).

    ``start_method``: ``popen`` (Lightning's ``ddp``: rank 0 re-launches the command for the
    other ranks; Slurm's srun tasks are used as they are), or ``spawn`` (``ddp_spawn``: workers
    forked from this process; needed inside pytest, Hydra multirun and submitit_local).
    Other keyword arguments go to ``DDPStrategy`` (and from there to DistributedDataParallel).
    When the ranks already exist (Slurm tasks, torchrun), nothing is spawned: ``popen``.
    """
    if start_method != "popen" and (SLURMEnvironment.detect() or TorchElasticEnvironment.detect()):
        rank_zero_info(f"ranks launched by the cluster: start_method {start_method} -> popen")
        start_method = "popen"
    return DDPStrategy(start_method=start_method, **{**_no_buffer_sync(), **kwargs})
