"""The LightningModule around a core model (flow VAE or LSTM baseline).

Metrics are sums (log-likelihood, log p(T), tokens, sequences, Monte-Carlo variance) kept in
float64 torchmetrics ``SumMetric``s, so they reduce correctly across ranks and batches; the
per-token numbers are derived from the sums at epoch end (never a mean of batch means).
"""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
import torch
from torchmetrics import SumMetric

from latentflow.lightning.anneal import KLSchedule
from latentflow.models.factory import build_model
from latentflow.models.objectives import nll_metrics

SUMS = ("log_px", "log_pT", "var", "recon", "kl", "tokens", "sequences")


class SequenceLitModule(pl.LightningModule):
    """Trains with the K-sample ELBO (KL-annealed), evaluates with importance-sampled NLL.

    Every constructor argument is a plain value saved in the checkpoint, so
    ``SequenceLitModule.load_from_checkpoint(path)`` rebuilds the model with no config file.
    ``data_config`` (the datamodule's config) lets ``latentflow-eval`` rebuild the data, and
    ``run_config`` is the whole resolved run config, kept for provenance.
    """

    def __init__(
        self,
        model: dict[str, Any],
        prior: dict[str, Any] | None,
        transform: str,
        data: dict[str, Any],
        data_config: dict[str, Any] | None = None,
        vocab: list[str] | None = None,
        lr: float = 1e-3,
        elbo_samples: int = 10,
        eval_samples: int = 50,
        eval_chunk: int = 10,
        val_samples: int | None = None,
        anneal: dict[str, Any] | None = None,
        max_nonfinite_steps: int = 20,
        run_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = build_model(model, prior, transform, data)
        self.is_flow = model.get("kind", "flow") == "flow"
        self.text = data["kind"] == "text"
        self.vocab = vocab
        self.schedule = KLSchedule(**(anneal or {"kind": "none"}))
        self.elbo_samples = elbo_samples if self.is_flow else 1
        self.eval_samples, self.eval_chunk = eval_samples, eval_chunk
        self.val_samples = val_samples  # S for the per-epoch validation inside fit (None: S)
        self.max_nonfinite_steps = max_nonfinite_steps
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

    # ------------------------------------------------------------------ training
    def kl_weight(self) -> float:
        n = self.trainer.num_training_batches if self._trainer is not None else 0
        batch_idx = getattr(self, "_batch_idx", 0)
        fraction = batch_idx / n if n and math.isfinite(n) else 0.0
        return self.schedule.weight(self.current_epoch, fraction, self.global_step)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._batch_idx = batch_idx

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
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Non-finite guard: a step whose gradients hold NaN/inf is skipped (all grads set to
        None, so Adam leaves parameters and moments untouched) and counted; too many in a row
        stop training with a clear message."""
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        finite = torch.stack([torch.isfinite(g).all() for g in grads]).all() if grads else True
        if bool(finite):
            self.nonfinite_in_a_row = 0
            return
        optimizer.zero_grad(set_to_none=True)
        self.nonfinite_total += 1
        self.nonfinite_in_a_row += 1
        self.log("train/nonfinite_steps", self.nonfinite_total.float())
        if self.nonfinite_in_a_row >= self.max_nonfinite_steps:
            raise FloatingPointError(
                f"{self.nonfinite_in_a_row} consecutive steps had non-finite loss or gradients "
                f"(epoch {self.current_epoch}, step {self.global_step}); stopping. Lower the "
                "learning rate or check the data; raise train.max_nonfinite_steps to allow more."
            )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    # ------------------------------------------------------------------ evaluation
    def _eval_step(self, batch: dict[str, torch.Tensor], stage: str) -> None:
        x, lengths = batch["x"], batch["lengths"]
        fitting = self._trainer is not None and self.trainer.state.fn == "fit"
        S = self.val_samples if (fitting and self.val_samples) else self.eval_samples
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
            self.log(f"{stage}/{key}", value, prog_bar=key == "nll", sync_dist=False)
        self.final_metrics[stage] = m
        return m

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    # ------------------------------------------------------------------ checkpoint extras
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["kl_weight"] = self.kl_weight() if self._trainer is not None else None
        checkpoint["nonfinite_in_a_row"] = self.nonfinite_in_a_row

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.nonfinite_in_a_row = checkpoint.get("nonfinite_in_a_row", 0)
