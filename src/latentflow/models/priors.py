"""Flow priors p(z_{1:T} | T) over a latent sequence z in R^{T x H} (paper Sec. 4.3).

Each prior is a time-wise flow wrapped around a hidden flow (``latentflow.flows``) applied at
every step and conditioned on a time-wise context c_t:

* ``AFTimePrior`` -- AF in time: c_t = LSTM(z_{<t}). Density is one parallel (teacher-forced)
  LSTM pass plus one hidden-flow pass; sampling is serial in time (AF/AF, AF/SCF, ablations).
* ``IAFTimePrior`` -- IAF in time: c_t = LSTM(eps_{<t}). Sampling is parallel in time (all of
  eps is drawn first); density is serial in time (IAF/SCF).
* ``IndependentPrior`` -- no time dynamics: c_t = position features only ("AF-only").

All share ``log_prob(z, lengths) -> [B]`` and ``sample(lengths) -> (z, log_prob)``; padded
positions (t >= T_b) never enter any term and are zero in samples.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from latentflow.flows import FlowStack, hidden_flow, standard_normal_log_prob
from latentflow.models.position import LengthConditioning, sequence_mask
from latentflow.models.recurrent import LSTMState, lstm_step, native_rnn

TIME_FLOWS = ("af", "iaf", "none")


class SequencePrior(nn.Module):
    """Base class: a hidden flow at each step, conditioned on a time-wise context."""

    def __init__(
        self,
        latent_dim: int,
        max_length: int,
        hidden_flow_kind: str = "af",
        transform: str = "nlsq",
        num_flow_layers: int = 5,
        flow_hidden: int = 100,
        pos_dim: int = 32,
        context_dim: int = 0,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.position = LengthConditioning(max_length, pos_dim)
        self.flow: FlowStack = hidden_flow(
            hidden_flow_kind,
            latent_dim,
            context_dim or self.position.out_features,
            transform,
            num_flow_layers,
            flow_hidden,
        )

    def eps_and_logdet(self, z: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Noise eps [B, T, H] and per-step log|det d eps_t / d z_t| [B, T] (density map)."""
        raise NotImplementedError  # pragma: no cover

    def log_prob(self, z: Tensor, lengths: Tensor) -> Tensor:
        """log p(z_{1:T} | T) per sequence: [B]."""
        mask = sequence_mask(lengths, z.shape[1])  # [B, T]
        # Whatever sits in the padding (even inf) must not reach a valid term: zero it first.
        z = z.masked_fill(~mask[..., None], 0.0)
        eps, logdet = self.eps_and_logdet(z, lengths)
        per_step = standard_normal_log_prob(eps) + logdet  # [B, T]
        return per_step.masked_fill(~mask, 0.0).sum(-1)

    def sample(
        self,
        lengths: Tensor,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Draw z ~ p(z | T) for each length: (z [B, T, H], log p(z | T) [B]).

        ``temperature`` scales the base density's standard deviation (1 = the model itself);
        the returned log-density is the model's, evaluated at the sample.
        """
        raise NotImplementedError  # pragma: no cover

    def _draw_eps(self, lengths: Tensor, temperature: float, generator) -> Tensor:
        B, T = lengths.shape[0], int(lengths.max())
        p = next(self.parameters())
        eps = torch.randn(B, T, self.latent_dim, generator=generator, device="cpu")
        return eps.to(device=p.device, dtype=p.dtype) * temperature  # [B, T, H]

    def _finish(self, z: Tensor, eps: Tensor, inv_logdet: Tensor, lengths: Tensor):
        mask = sequence_mask(lengths, z.shape[1])  # [B, T]
        # log p(z) = log N(eps) + log|d eps/d z| = log N(eps) - log|d z/d eps|
        log_p = (standard_normal_log_prob(eps) - inv_logdet).masked_fill(~mask, 0.0).sum(-1)
        return z.masked_fill(~mask[..., None], 0.0), log_p


class _RecurrentContext(nn.Module):
    """A 2-layer LSTM over [v_{t-1} ; position(t)] giving the context c_t for step t."""

    def __init__(self, in_dim: int, pos_features: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        self.lstm = nn.LSTM(
            in_dim + pos_features,
            hidden,
            layers,
            batch_first=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)
        self.start = nn.Parameter(torch.zeros(in_dim))  # v_0

    def shifted_inputs(self, v: Tensor, pos: Tensor) -> Tensor:
        start = self.start.expand(v.shape[0], 1, -1)  # [B, 1, H]
        return torch.cat([torch.cat([start, v[:, :-1]], 1), pos], -1)  # [B, T, H + P]

    def parallel(self, v: Tensor, pos: Tensor) -> Tensor:
        """Contexts of all steps at once (teacher-forced): [B, T, hidden]."""
        out, _ = self.lstm(self.shifted_inputs(v, pos))
        return self.dropout(out)

    def step(self, v_prev: Tensor | None, pos_t: Tensor, state: LSTMState | None):
        """One step: v_prev [B, H] (None at t = 0), pos_t [B, P] -> (c_t [B, hidden], state).

        Through ``lstm_step`` (``torch.lstm_cell`` per layer): one ``nn.LSTM`` call per step
        would re-lay out the weights every time on CPU (oneDNN), several times the step's
        arithmetic. Used by the serial loops: IAF density, AF sampling."""
        if v_prev is None:
            v_prev = self.start.expand(pos_t.shape[0], -1)
        out, state = lstm_step(self.lstm, torch.cat([v_prev, pos_t], -1), state)
        return self.dropout(out), state


class AFTimePrior(SequencePrior):
    """AF in time: z_t = f_hidden(eps_t; c_t), c_t = LSTM(z_{<t}, position)."""

    def __init__(
        self,
        latent_dim: int,
        max_length: int,
        hidden_flow_kind: str = "af",
        transform: str = "nlsq",
        num_flow_layers: int = 5,
        flow_hidden: int = 100,
        pos_dim: int = 32,
        lstm_hidden: int = 500,
        lstm_layers: int = 2,
        dropout: float = 0.2,
    ) -> None:
        super().__init__(
            latent_dim,
            max_length,
            hidden_flow_kind,
            transform,
            num_flow_layers,
            flow_hidden,
            pos_dim,
            context_dim=lstm_hidden,
        )
        self.context = _RecurrentContext(
            latent_dim, self.position.out_features, lstm_hidden, lstm_layers, dropout
        )

    def eps_and_logdet(self, z: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        ctx = self.context.parallel(z, self.position(lengths, z.shape[1]))  # [B, T, C]
        return self.flow(z, ctx)

    def sample(self, lengths, temperature=1.0, generator=None):
        eps = self._draw_eps(lengths, temperature, generator)  # [B, T, H]
        pos = self.position(lengths, eps.shape[1])  # [B, T, P]
        zs, lds, state, z_prev = [], [], None, None
        for t in range(eps.shape[1]):  # serial in time: c_t needs z_{t-1}
            ctx, state = self.context.step(z_prev, pos[:, t], state)
            z_prev, ld = self.flow.inverse(eps[:, t], ctx)
            zs.append(z_prev)
            lds.append(ld)
        return self._finish(torch.stack(zs, 1), eps, torch.stack(lds, 1), lengths)


class IAFTimePrior(AFTimePrior):
    """IAF in time: z_t = f_hidden(eps_t; c_t), c_t = LSTM(eps_{<t}, position).

    Sampling is parallel in time; density evaluation is serial (eps_{t-1} is needed for c_t).
    """

    def __init__(self, *args, dropout: float = 0.0, **kwargs) -> None:
        super().__init__(*args, dropout=dropout, **kwargs)

    def eps_and_logdet(self, z: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        pos = self.position(lengths, z.shape[1])  # [B, T, P]
        eps, lds, state, eps_prev = [], [], None, None
        for t in range(z.shape[1]):
            ctx, state = self.context.step(eps_prev, pos[:, t], state)
            eps_prev, ld = self.flow(z[:, t], ctx)
            eps.append(eps_prev)
            lds.append(ld)
        return torch.stack(eps, 1), torch.stack(lds, 1)

    def sample(self, lengths, temperature=1.0, generator=None):
        eps = self._draw_eps(lengths, temperature, generator)  # [B, T, H]
        with native_rnn():  # one LSTM call: skip oneDNN's per-call weight re-layout
            ctx = self.context.parallel(eps, self.position(lengths, eps.shape[1]))  # [B, T, C]
        z, inv_ld = self.flow.inverse(eps, ctx)  # all steps at once
        return self._finish(z, eps, inv_ld, lengths)


class IndependentPrior(SequencePrior):
    """No time dynamics: each z_t has its own hidden flow conditioned only on (t, T).

    The paper's "AF only" row of Table 1 (a "unigram" prior).
    """

    def eps_and_logdet(self, z: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        return self.flow(z, self.position(lengths, z.shape[1]))

    def sample(self, lengths, temperature=1.0, generator=None):
        eps = self._draw_eps(lengths, temperature, generator)
        z, inv_ld = self.flow.inverse(eps, self.position(lengths, eps.shape[1]))
        return self._finish(z, eps, inv_ld, lengths)


def build_prior(
    time_flow: str,
    hidden_flow: str,
    transform: str,
    latent_dim: int,
    max_length: int,
    num_flow_layers: int = 5,
    flow_hidden: int = 100,
    pos_dim: int = 32,
    lstm_hidden: int = 500,
    lstm_layers: int = 2,
    dropout: float = 0.2,
) -> SequencePrior:
    """The priors of Tables 1-2 by name: ``time_flow`` in {af, iaf, none}, ``hidden_flow`` in
    {af, scf, elementwise}, ``transform`` in {nlsq, affine}."""
    if time_flow not in TIME_FLOWS:
        raise ValueError(f"prior.time_flow must be one of {list(TIME_FLOWS)}, got {time_flow!r}")
    common = dict(
        latent_dim=latent_dim,
        max_length=max_length,
        hidden_flow_kind=hidden_flow,
        transform=transform,
        num_flow_layers=num_flow_layers,
        flow_hidden=flow_hidden,
        pos_dim=pos_dim,
    )
    if time_flow == "none":
        return IndependentPrior(**common)
    cls = AFTimePrior if time_flow == "af" else IAFTimePrior
    return cls(**common, lstm_hidden=lstm_hidden, lstm_layers=lstm_layers, dropout=dropout)
