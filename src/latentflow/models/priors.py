"""Flow priors p(z_{1:T} | T) over a latent sequence z in R^{T x H} (paper Sec. 4.3).

Each prior is a time-wise flow wrapped around a hidden flow (``prior.flow``, applied at every
step) conditioned on a time-wise context c_t from a time conditioner (``prior.conditioner``):

* ``AFTimePrior`` -- AF in time: c_t = net(z_{<t}). Density is one parallel (teacher-forced)
  conditioner pass plus one hidden-flow pass; sampling is serial in time (AF/AF, AF/SCF, the
  ablations).
* ``IAFTimePrior`` -- IAF in time: c_t = net(eps_{<t}). Sampling is parallel in time (all of
  eps is drawn first); density is serial in time (IAF/SCF).
* ``IndependentPrior`` -- no time dynamics: c_t = position features only ("AF-only").

All share ``log_prob(z, lengths) -> [B]`` and ``sample(lengths) -> (z, log_prob)``; padded
positions (t >= T_b) never enter any term and are zero in samples. The parts are injected:
``flow`` is called as ``flow(features=H, context_features=C)`` and ``conditioner`` as
``conditioner(in_features=H, position_features=P)`` (factories, e.g. ``functools.partial`` or
config nodes; ``latentflow.protocols``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.profiler import record_function

from latentflow.flows import standard_normal_log_prob
from latentflow.models.position import LengthConditioning, sequence_mask
from latentflow.models.recurrent import sequence_rnn
from latentflow.protocols import HiddenFlow, TimeConditioner

FlowFactory = Callable[..., HiddenFlow]
ConditionerFactory = Callable[..., TimeConditioner]


class SequencePrior(nn.Module):
    """Base class: a hidden flow at each step, conditioned on a time-wise context."""

    def __init__(self, latent_dim: int, max_length: int, pos_dim: int) -> None:
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        self.latent_dim = latent_dim
        self.position = LengthConditioning(max_length, pos_dim)

    def eps_and_logdet(self, z: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Noise eps [B, T, H] and per-step log|det d eps_t / d z_t| [B, T] (density map)."""
        raise NotImplementedError  # pragma: no cover

    def contexts(self, z: Tensor, lengths: Tensor) -> Tensor:
        """The context c_t that conditions the hidden flow at every step: [B, T, C]."""
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


def sample_af_in_time(
    context: TimeConditioner, flow: HiddenFlow, eps: Tensor, position: Tensor
) -> tuple[Tensor, Tensor]:
    """AF in time, sampling direction: z_t = flow^-1(eps_t; c_t), c_t = context(z_{<t}), one
    step at a time with the conditioner's state. ``eps [B, T, H]``, ``position [B, T, P]`` ->
    (z [B, T, H], log |det d z_t / d eps_t| [B, T])."""
    zs, lds, state, z_prev = [], [], None, None
    with record_function("latentflow.serial_loop"):
        for t in range(eps.shape[1]):  # serial in time: c_t needs z_{t-1}
            ctx, state = context.step(z_prev, position[:, t], state)
            z_prev, ld = flow.sample(eps[:, t], ctx)
            zs.append(z_prev)
            lds.append(ld)
    return torch.stack(zs, 1), torch.stack(lds, 1)


def build_part(part: Any, **wiring: Any) -> nn.Module:
    """A part given as a module is used as it is; a factory is called with the wiring."""
    return part if isinstance(part, nn.Module) else part(**wiring)


class AFTimePrior(SequencePrior):
    """AF in time: z_t = f_hidden(eps_t; c_t), c_t = conditioner(z_{<t}, position)."""

    def __init__(
        self,
        latent_dim: int,
        max_length: int,
        *,
        flow: FlowFactory,
        conditioner: ConditionerFactory,
        pos_dim: int,
    ) -> None:
        super().__init__(latent_dim, max_length, pos_dim)
        P = self.position.out_features
        # Parameters are drawn in the order position, flow, conditioner (that of 0.1, so a seed
        # gives the same initial weights), but the flow needs the conditioner's width first:
        # build the conditioner once to read it, then again after the flow.
        rng = torch.get_rng_state()
        C = build_part(conditioner, in_features=latent_dim, position_features=P).out_features
        torch.set_rng_state(rng)
        self.flow: HiddenFlow = build_part(flow, features=latent_dim, context_features=C)
        self.context: TimeConditioner = build_part(
            conditioner, in_features=latent_dim, position_features=P
        )
        if self.context.out_features != C:
            raise ValueError("the conditioner's out_features changed between two builds")

    def contexts(self, z: Tensor, lengths: Tensor) -> Tensor:
        return self.context.parallel(z, self.position(lengths, z.shape[1]))  # [B, T, C]

    def eps_and_logdet(self, z: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        return self.flow(z, self.contexts(z, lengths))

    def sample(self, lengths, temperature=1.0, generator=None):
        eps = self._draw_eps(lengths, temperature, generator)  # [B, T, H]
        pos = self.position(lengths, eps.shape[1])  # [B, T, P]
        z, inv_logdet = sample_af_in_time(self.context, self.flow, eps, pos)
        return self._finish(z, eps, inv_logdet, lengths)


class IAFTimePrior(AFTimePrior):
    """IAF in time: z_t = f_hidden(eps_t; c_t), c_t = conditioner(eps_{<t}, position).

    Sampling is parallel in time; density evaluation is serial (eps_{t-1} is needed for c_t).
    """

    def contexts(self, z: Tensor, lengths: Tensor) -> Tensor:
        eps, _ = self.eps_and_logdet(z, lengths)
        return self.context.parallel(eps, self.position(lengths, z.shape[1]))

    def eps_and_logdet(self, z: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        pos = self.position(lengths, z.shape[1])  # [B, T, P]
        eps, lds, state, eps_prev = [], [], None, None
        with record_function("latentflow.serial_loop"):  # a profiler range (benchmarks)
            for t in range(z.shape[1]):
                ctx, state = self.context.step(eps_prev, pos[:, t], state)
                eps_prev, ld = self.flow(z[:, t], ctx)
                eps.append(eps_prev)
                lds.append(ld)
        return torch.stack(eps, 1), torch.stack(lds, 1)

    def sample(self, lengths, temperature=1.0, generator=None):
        eps = self._draw_eps(lengths, temperature, generator)  # [B, T, H]
        with sequence_rnn(eps.shape[1]):  # one whole-sequence LSTM call: the faster kernel
            ctx = self.context.parallel(eps, self.position(lengths, eps.shape[1]))  # [B, T, C]
        z, inv_ld = self.flow.sample(eps, ctx)  # all steps at once
        return self._finish(z, eps, inv_ld, lengths)


class IndependentPrior(SequencePrior):
    """No time dynamics: each z_t has its own hidden flow conditioned only on (t, T).

    The paper's "AF only" row of Table 1 (a "unigram" prior).
    """

    def __init__(self, latent_dim: int, max_length: int, *, flow: FlowFactory, pos_dim: int):
        super().__init__(latent_dim, max_length, pos_dim)
        self.flow: HiddenFlow = build_part(
            flow, features=latent_dim, context_features=self.position.out_features
        )

    def contexts(self, z: Tensor, lengths: Tensor) -> Tensor:
        return self.position(lengths, z.shape[1])

    def eps_and_logdet(self, z: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        return self.flow(z, self.contexts(z, lengths))

    def sample(self, lengths, temperature=1.0, generator=None):
        eps = self._draw_eps(lengths, temperature, generator)
        z, inv_ld = self.flow.sample(eps, self.position(lengths, eps.shape[1]))
        return self._finish(z, eps, inv_ld, lengths)
