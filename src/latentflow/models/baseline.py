"""The LSTM language-model baseline (paper Sec. 6): p(x | T) = prod_t p(x_t | x_{<t}, T),
with the same length conditioning as the flow model, sentence-wise."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from latentflow.data.lengths import LengthDistribution
from latentflow.models.emission import emission_log_prob, emission_sample
from latentflow.models.position import LengthConditioning, sequence_mask
from latentflow.models.recurrent import lstm_call, lstm_step
from latentflow.models.vae import sample_lengths


class LSTMLanguageModel(nn.Module):
    """Autoregressive LSTM over [x_{t-1} ; length one-hots(t)] with tied output weights (text)."""

    def __init__(
        self,
        num_features: int,
        max_length: int,
        text: bool,
        *,
        embed_dim: int,
        hidden_dim: int,
        num_layers: int,
        dropout: float,
        pos_dim: int,
        tie_weights: bool,
        length_distribution: LengthDistribution | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        self.text = text
        if length_distribution is None:
            length_distribution = LengthDistribution.empty(max_length)
        self.length_distribution = length_distribution
        self.embed = nn.Embedding(num_features, embed_dim) if text else None
        self.embed_music = None if text else nn.Linear(num_features, embed_dim)
        self.start = nn.Parameter(torch.zeros(embed_dim))  # the input at t = 0
        self.pos = LengthConditioning(max_length, pos_dim)
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(
            embed_dim + 2 * pos_dim,
            hidden_dim,
            num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.to_features = nn.Linear(hidden_dim, embed_dim)
        self.out = nn.Linear(embed_dim, num_features)
        if text and tie_weights:
            self.out.weight = self.embed.weight

    def _embed(self, x: Tensor) -> Tensor:
        return self.embed(x) if self.text else self.embed_music(x)  # [B, T, E]

    def _logits(self, inputs: Tensor, state=None):
        out, state = lstm_call(self.lstm, self.dropout(inputs), state)
        logits = self.out(self.to_features(self.dropout(out)))
        return logits.to(self.out.weight.dtype), state  # fp32 log-probabilities under autocast

    def log_prob(self, x: Tensor, lengths: Tensor) -> Tensor:
        """log p(x | T) per sequence: [B] (teacher-forced, one LSTM call)."""
        B, T = lengths.shape[0], x.shape[1]
        emb = self._embed(x)
        prev = torch.cat([self.start.expand(B, 1, -1), emb[:, :-1]], 1)  # [B, T, E]
        logits, _ = self._logits(torch.cat([prev, self.pos(lengths, T)], -1))
        return emission_log_prob(logits, x, sequence_mask(lengths, T), self.text)

    def training_terms(
        self, x: Tensor, lengths: Tensor, num_samples: int = 1, kl_weight: float = 1.0
    ) -> dict[str, Tensor]:
        """Same keys as ``LatentFlowModel.elbo``: the exact log-likelihood, zero KL."""
        lp = self.log_prob(x, lengths)
        zero = torch.zeros_like(lp)
        return {"recon": lp, "kl": zero, "elbo": lp, "objective": lp}

    @torch.no_grad()
    def evaluate(
        self, x: Tensor, lengths: Tensor, num_samples: int = 1, chunk_size: int = 1
    ) -> dict[str, Tensor]:
        """Exact log p(x | T) (zero standard error, zero KL): the flow model's keys."""
        lp = self.log_prob(x, lengths).double()
        zero = torch.zeros_like(lp)
        return {"log_px": lp, "stderr": zero, "recon": lp, "kl": zero}

    def log_likelihood(
        self, x: Tensor, lengths: Tensor, num_samples: int = 1, chunk_size: int = 1
    ) -> tuple[Tensor, Tensor]:
        """Exact log p(x | T) and a zero standard error (same signature as the flow model)."""
        out = self.evaluate(x, lengths)
        return out["log_px"], out["stderr"]

    @torch.no_grad()
    def sample(
        self,
        lengths: Tensor | None = None,
        num_samples: int | None = None,
        temperature: float = 1.0,
        argmax: bool = False,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """Ancestral sampling, one step at a time. ``temperature`` divides the logits."""
        lengths = sample_lengths(self, lengths, num_samples, generator)
        B, T = lengths.shape[0], int(lengths.max())
        pos = self.pos(lengths, T)  # [B, T, P]
        prev, state, xs = self.start.expand(B, -1), None, []
        for t in range(T):
            # lstm_step: nn.LSTM's per-call oneDNN weight re-layout dominates single steps
            inputs = self.dropout(torch.cat([prev, pos[:, t]], -1))  # [B, E + P]
            out, state = lstm_step(self.lstm, inputs, state)  # [B, hidden]
            logits = self.out(self.to_features(self.dropout(out)))[:, None]  # [B, 1, V | 88]
            x_t = emission_sample(logits / temperature, self.text, argmax, generator)  # [B, 1..]
            xs.append(x_t[:, 0])
            prev = self._embed(x_t)[:, 0]
        x = torch.stack(xs, 1)
        mask = sequence_mask(lengths, T)
        return {"x": x * (mask if self.text else mask[..., None]), "lengths": lengths}
