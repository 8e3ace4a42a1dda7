"""The LightningModule around a core model (flow VAE or LSTM baseline).

Metrics are sums (log-likelihood, log p(T), tokens, sequences, Monte-Carlo variance) kept in
float64 torchmetrics ``SumMetric``s, so they reduce correctly across ranks and batches; the
per-token numbers are derived from the sums at epoch end (never a mean of batch means).

Randomness is a function of position, not of history: each training batch reseeds the global
generator from (seed, rank, epoch, batch index), and each evaluation batch draws its importance
samples from a generator seeded by (seed, its first sequence index). So a run resumed mid-epoch
continues with exactly the noise of an uninterrupted one, and an evaluation gives the same
number on one process or on several (the batches are the same, only spread over ranks).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torchmetrics import SumMetric

from latentflow.components import ComponentError, instantiate
from latentflow.lightning.anneal import KLSchedule
from latentflow.lightning.internals import attached_trainer
from latentflow.models.build import build_net, has_prior
from latentflow.models.objectives import nll_metrics
from latentflow.protocols import ValidationLRSchedule, missing_members

# The epoch metrics are logged from sums already reduced over ranks (SumMetric syncs in compute),
# so Lightning's advice to add sync_dist=True does not apply.
warnings.filterwarnings(
    "ignore", message=r".*when logging on epoch level in distributed setting.*", append=True
)

SUMS = ("log_px", "log_pT", "var", "recon", "kl", "tokens", "sequences")


class SequenceLitModule(pl.LightningModule):
    """Trains with the K-sample ELBO (KL-annealed), evaluates with importance-sampled NLL.

    ``components`` holds the resolved ``_target_`` nodes of the run as plain data: ``model``,
    ``prior`` (None for a model without one), ``optimizer`` and ``lr_schedule`` (None for a
    constant learning rate). They and every other constructor argument are saved in the
    checkpoint, so ``SequenceLitModule.load_from_checkpoint(path)`` (that is,
    ``latentflow.run.load_module``) rebuilds the model with no config file, a user's own classes
    included once trusted. ``length_distribution`` (p(T), from the data) is not a
    hyperparameter: it travels in the state dict. ``data_config`` (the datamodule's node) lets
    ``latentflow-eval`` rebuild the data, and ``run_config`` is the whole resolved run config,
    kept for provenance. ``seed`` keys the per-batch random streams (module
    docstring); None keeps PyTorch's global stream as it is.
    """

    def __init__(
        self,
        components: dict[str, Any],
        data: dict[str, Any],
        data_config: dict[str, Any] | None = None,
        vocab: list[str] | None = None,
        elbo_samples: int = 10,
        eval_samples: int = 50,
        eval_chunk: int = 10,
        val_samples: int | None = None,
        anneal: dict[str, Any] | None = None,
        max_nonfinite_steps: int = 20,
        run_config: dict[str, Any] | None = None,
        seed: int | None = None,
        monitor: str = "val/nll",
        length_distribution: torch.nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["length_distribution"])
        self.net = build_net(components, data, length_distribution)
        self.is_flow = has_prior(self.net)
        self.text = data["kind"] == "text"
        self.vocab = vocab
        self.make_optimizer = instantiate(components["optimizer"], "optimizer", partial=True)
        schedule = components.get("lr_schedule")
        self.make_lr_schedule = (
            None if schedule is None else instantiate(schedule, "lr_schedule", partial=True)
        )
        self.lr_schedule: ValidationLRSchedule | None = None  # set by configure_optimizers
        self._lr_schedule_state: dict[str, Any] | None = None
        self.schedule = KLSchedule(**(anneal or {"kind": "none"}))
        self.elbo_samples = elbo_samples
        self.eval_samples, self.eval_chunk = eval_samples, eval_chunk
        self.val_samples = val_samples  # S for the per-epoch validation inside fit (None: S)
        self.max_nonfinite_steps = max_nonfinite_steps
        self.seed = seed
        self.nonfinite_in_a_row = 0
        self.register_buffer("nonfinite_total", torch.zeros((), dtype=torch.long))
        self.sums = torch.nn.ModuleDict(
            {
                f"{stage}_{key}": SumMetric(nan_strategy="disable")
                for stage in ("val", "test")
                for key in SUMS
            }
        )
        for metric in self.sums.values():
            metric.set_dtype(torch.float64)
        self.final_metrics: dict[str, dict[str, float]] = {}

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls, checkpoint_path: Any, map_location: Any = None, trust_components: Any = (), **_: Any
    ) -> SequenceLitModule:
        """The module of a checkpoint, opened safely: ``latentflow.run.load_module`` (the
        unpickling runs no code, and the component targets are checked before any is built;
        ``trust_components=["my_pkg"]`` admits your own). Lightning's own loader would build
        whatever the checkpoint names."""
        from latentflow.run import load_module

        return load_module(checkpoint_path, map_location or "cpu", trust_components)

    def setup(self, stage: str) -> None:
        """Own tensors in every process. ``ddp_spawn`` hands the module to its workers through
        shared memory, and on CPU nothing copies it: without this every rank would step the same
        parameter storage (one update per rank) and add into the same metric sums."""
        with torch.no_grad():
            for tensor in [*self.parameters(), *self.buffers()]:
                if tensor.device.type == "cpu" and tensor.is_shared():
                    tensor.data = tensor.data.clone()
        for metric in self.sums.values():
            metric.reset()

    def _stream_seed(self, *keys: int) -> int:
        """A 63-bit seed mixed from ``self.seed`` and ``keys`` (numpy's SeedSequence)."""
        state = np.random.SeedSequence([int(self.seed or 0), *keys]).generate_state(2, np.uint32)
        return (int(state[0]) << 31) ^ int(state[1])

    # ------------------------------------------------------------------ training
    def kl_weight(self) -> float:
        n = self.trainer.num_training_batches if attached_trainer(self) is not None else 0
        batch_idx = getattr(self, "_batch_idx", 0)
        fraction = batch_idx / n if n and math.isfinite(n) else 0.0
        return self.schedule.weight(self.current_epoch, fraction, self.global_step)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._batch_idx = batch_idx
        attached = attached_trainer(self) is not None
        if batch_idx == 0 and self.make_lr_schedule is not None and attached:
            self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"])
        if self.seed is not None:
            # The noise of this batch (ELBO samples, dropout) depends only on where it is.
            seed = self._stream_seed(0, self.global_rank, self.current_epoch, batch_idx)
            torch.manual_seed(seed)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, lengths = batch["x"], batch["lengths"]
        beta = self.kl_weight()
        out = self.net.training_terms(x, lengths, self.elbo_samples, beta)
        tokens = lengths.sum()
        # Per-token loss over the batch: a sum over sequences divided by the token count.
        loss = -out["objective"].sum() / tokens
        bs = lengths.numel()
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log("train/recon", -out["recon"].sum() / tokens, batch_size=bs)
        self.log("train/kl", out["kl"].sum() / tokens, batch_size=bs)
        self.log("train/elbo", -out["elbo"].sum() / tokens, batch_size=bs)
        self.log("train/kl_weight", beta, prog_bar=self.is_flow, batch_size=bs)
        self._loss_finite = torch.isfinite(loss.detach())  # read by the non-finite guard
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Non-finite guard: a step whose loss or gradients hold NaN/inf is skipped (all grads
        set to None, so Adam leaves parameters and moments untouched) and counted (logged as
        ``train/nonfinite_steps``); too many in a row stop training with a clear message.
        Under DDP the ranks decide together, so they skip the same steps."""
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        finite = torch.stack([torch.isfinite(g).all() for g in grads]).all() if grads else None
        loss_finite, self._loss_finite = getattr(self, "_loss_finite", None), None
        if loss_finite is not None:
            finite = loss_finite if finite is None else finite & loss_finite.to(finite.device)
        ok = True if finite is None else bool(finite)
        if attached_trainer(self) is not None and self.trainer.world_size > 1:
            ok = self.trainer.strategy.reduce_boolean_decision(ok, all=True)
        if not ok:
            optimizer.zero_grad(set_to_none=True)
            self.nonfinite_total += 1
        self.nonfinite_in_a_row = 0 if ok else self.nonfinite_in_a_row + 1
        self.log("train/nonfinite_steps", self.nonfinite_total.float())
        if self.nonfinite_in_a_row >= self.max_nonfinite_steps:
            raise FloatingPointError(
                f"{self.nonfinite_in_a_row} consecutive steps had non-finite loss or gradients "
                f"(epoch {self.current_epoch}, step {self.global_step}); stopping. Lower the "
                "learning rate or check the data; raise train.max_nonfinite_steps to allow more."
            )

    def configure_optimizers(self) -> Any:
        """``optimizer`` called with the parameters; ``lr_schedule`` with the optimizer: a torch
        LR scheduler (Lightning steps it once per epoch) or a validation-driven schedule
        (``ValidationLRSchedule``, stepped here after every validation)."""
        optimizer = self.make_optimizer(self.parameters())
        if self.make_lr_schedule is None:
            return optimizer
        schedule = self.make_lr_schedule(optimizer)
        if isinstance(schedule, torch.optim.lr_scheduler.LRScheduler):
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule}}
        if isinstance(schedule, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler = {"scheduler": schedule, "monitor": self.hparams.monitor}
            return {"optimizer": optimizer, "lr_scheduler": scheduler}
        missing = missing_members(schedule, ValidationLRSchedule)
        if missing:
            raise ComponentError(
                f"lr_schedule: {type(schedule).__name__} is neither a torch LR scheduler nor a "
                f"ValidationLRSchedule (latentflow.protocols): missing {', '.join(missing)}"
            )
        if self._lr_schedule_state is not None:  # a resumed run
            schedule.load_state_dict(self._lr_schedule_state)
        self.lr_schedule = schedule
        return optimizer

    def _step_lr_schedule(self, metrics: dict[str, float]) -> None:
        """Step a validation-driven LR schedule with this validation's metrics. Called at the
        validation epoch's end, before any callback's ``on_validation_end``: the checkpoint
        ``ModelCheckpoint`` writes then holds the schedule (and the LR) after this step."""
        schedule, trainer = self.lr_schedule, attached_trainer(self)
        if schedule is None or trainer is None or trainer.sanity_checking:
            return
        if trainer.state.fn != "fit":
            return
        prefix, _, key = schedule.monitor.partition("/")
        value = metrics.get(key) if prefix == "val" else None
        if value is None:  # a metric of another stage (train/...) or of a callback
            value = trainer.callback_metrics.get(schedule.monitor)
        if value is not None:
            schedule.on_validation(float(value), trainer.current_epoch, trainer.global_step)

    # ------------------------------------------------------------------ evaluation
    def _eval_step(self, batch: dict[str, torch.Tensor], stage: str) -> None:
        x, lengths = batch["x"], batch["lengths"]
        fitting = attached_trainer(self) is not None and self.trainer.state.fn == "fit"
        S = self.val_samples if (fitting and self.val_samples) else self.eval_samples
        # Importance samples keyed by the batch's first sequence: the same on any rank and in any
        # order, and the global stream (training's) is left untouched.
        first = int(batch["index"].min()) if "index" in batch else 0
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self._stream_seed(1, first))
            out = self.net.evaluate(x, lengths, S, self.eval_chunk)
        log_pT = self.net.length_distribution.log_prob(lengths).double()
        values = {
            "log_px": out["log_px"].sum(),
            "log_pT": log_pT.sum(),
            "var": out["stderr"].nan_to_num(0.0).square().sum(),
            "recon": out["recon"].sum(),
            "kl": out["kl"].sum(),
            "tokens": lengths.sum().double(),
            "sequences": torch.tensor(float(lengths.numel()), dtype=torch.float64),
        }
        for key, value in values.items():
            self.sums[f"{stage}_{key}"].update(value)

    def _eval_epoch_end(self, stage: str) -> dict[str, float]:
        s = {key: float(self.sums[f"{stage}_{key}"].compute()) for key in SUMS}
        for key in SUMS:
            self.sums[f"{stage}_{key}"].reset()
        if s["tokens"] == 0:
            return {}
        m = nll_metrics(s["log_px"], s["log_pT"], s["tokens"], s["sequences"], self.text, s["var"])
        unit = "bpc" if self.text else "nats"
        m["nll"] = m[f"nll_paper_{unit}"]  # the monitored number: the paper's convention
        m["recon"] = -s["recon"] / s["tokens"]
        m["kl"] = s["kl"] / s["tokens"]
        m["num_sequences"], m["num_tokens"] = s["sequences"], s["tokens"]
        for key, value in m.items():
            # float64 tensors: the numbers a spawned rank returns to the parent stay exact. The
            # sums are already global (SumMetric syncs in compute), hence no sync_dist.
            value = torch.tensor(value, dtype=torch.float64)
            self.log(f"{stage}/{key}", value, prog_bar=key == "nll", sync_dist=False)
        self.final_metrics[stage] = m
        return m

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._step_lr_schedule(self._eval_epoch_end("val"))

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    # ------------------------------------------------------------------ checkpoint extras
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["kl_weight"] = self.kl_weight() if attached_trainer(self) is not None else None
        checkpoint["nonfinite_in_a_row"] = self.nonfinite_in_a_row
        if self.lr_schedule is not None:
            checkpoint["lr_schedule"] = self.lr_schedule.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Before configure_optimizers on a resume: the schedule picks its state up there.
        self.nonfinite_in_a_row = checkpoint.get("nonfinite_in_a_row", 0)
        self._lr_schedule_state = checkpoint.get("lr_schedule")
