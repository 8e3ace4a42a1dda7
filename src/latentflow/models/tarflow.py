"""TarFlowLM's prior (Zhang, Zhai, Gu et al., NeurIPS 2025, arXiv 2507.00425; the blocks of
TarFlow, Zhai et al. 2024): L autoregressive flow blocks in time, stacked, the time direction
reversed between blocks, so that the stack as a whole sees context from both sides.

Block l maps its input v = z^{(l-1)} to its output z^{(l)} (density direction, data -> noise):

    z^{(l)}_t = f(v_t; c_t),   c_t = Transformer_l(v_{<t}, position(t))   (AF in time)

in the block's own time order (block l runs backwards when ``alternate`` and l is odd; a
sequence is reversed within its length, so the padding stays at the end). The Transformer is
the causal, pre-norm ``AttentionConditioner`` (``prior.conditioner``: width, heads, depth),
one per block; its key/value cache makes sampling one position per step. log p(z) = log N(eps)
+ sum_l sum_t log |det d z^{(l)}_t / d v_t| with eps = z^{(L)}: the Jacobian of each block is
block-triangular in (its) time, so its log-determinant is the sum of the per-step ones, exact.
Density is one parallel pass per block; sampling runs the blocks last to first, each serial in
time.

The hidden dimensions inside a step are handled by the existing hidden flows (``prior.flow``:
AF / SCF / elementwise, with any scalar transform), one per block, conditioned on c_t: the 2019
paper found the dependencies across hidden (its Table 2, "-AF hidden") worth keeping, and the
flows and transforms are already tested; ``hidden_flow=elementwise`` gives TarFlow's own block
(each dimension's transform from c_t alone, the dimensions independent given the past).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from latentflow.models.priors import (
    ConditionerFactory,
    FlowFactory,
    SequencePrior,
    build_part,
    sample_af_in_time,
)
from latentflow.models.recurrent import reverse_within_length
from latentflow.protocols import HiddenFlow, TimeConditioner


def reorder(x: Tensor, index: Tensor | None) -> Tensor:
    """``x [B, T, ...]`` with each sequence's steps put in ``index [B, T]`` order (None: as
    is). ``reverse_within_length`` is its own inverse, so the same call undoes it."""
    if index is None:
        return x
    shape = (*index.shape, *x.shape[2:])
    return x.gather(1, index.view(*index.shape, *[1] * (x.dim() - 2)).expand(shape))


class TarFlowBlock(nn.Module):
    """One block: z_t -> f(z_t; c_t) with c_t = conditioner(z_{<t}) in the block's time order
    (``reverse``: from the end of each sequence)."""

    def __init__(self, conditioner: TimeConditioner, flow: HiddenFlow, reverse: bool) -> None:
        super().__init__()
        self.context, self.flow, self.reverse = conditioner, flow, reverse

    def forward(self, v: Tensor, position: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        """Density direction: ``v [B, T, H]``, ``position [B, T, P]``, the reversal ``index
        [B, T]`` -> (output [B, T, H], log |det d out_t / d v_t| [B, T]), in data order."""
        order = index if self.reverse else None
        v, position = reorder(v, order), reorder(position, order)
        out, logdet = self.flow(v, self.context.parallel(v, position))  # one parallel pass
        return reorder(out, order), reorder(logdet, order)

    @torch.no_grad()
    def sample(self, u: Tensor, position: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        """Sampling direction, serial in the block's time with the conditioner's cache:
        ``u [B, T, H]`` -> (v [B, T, H], log |det d v_t / d u_t| [B, T])."""
        order = index if self.reverse else None
        u, position = reorder(u, order), reorder(position, order)
        v, logdet = sample_af_in_time(self.context, self.flow, u, position)
        return reorder(v, order), reorder(logdet, order)


class TarFlowPrior(SequencePrior):
    """``num_blocks`` ``TarFlowBlock``s, each with its own conditioner (``conditioner``, called
    as ``conditioner(in_features=H, position_features=P)``) and hidden flow (``flow``, called as
    ``flow(features=H, context_features=C)``); ``alternate``: reverse the time direction of
    every other block (False: all forwards, the one-direction ablation)."""

    # No single context per step: z_t's density comes from every block, in both time directions,
    # so there is no one flow p(z_t | z_<t) to draw (``latentflow-plot prior`` says so).
    contexts = None

    def __init__(
        self,
        latent_dim: int,
        max_length: int,
        *,
        flow: FlowFactory,
        conditioner: ConditionerFactory,
        pos_dim: int,
        num_blocks: int,
        alternate: bool = True,
    ) -> None:
        super().__init__(latent_dim, max_length, pos_dim)
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        P = self.position.out_features
        blocks = []
        for i in range(num_blocks):
            ctx = build_part(conditioner, in_features=latent_dim, position_features=P)
            hidden = build_part(flow, features=latent_dim, context_features=ctx.out_features)
            blocks.append(TarFlowBlock(ctx, hidden, reverse=alternate and i % 2 == 1))
        self.blocks = nn.ModuleList(blocks)

    def eps_and_logdet(self, z: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        T = z.shape[1]
        position = self.position(lengths, T)  # [B, T, P]
        index = reverse_within_length(lengths, T)  # [B, T]
        logdet = z.new_zeros(z.shape[:2])
        for block in self.blocks:
            z, ld = block(z, position, index)
            logdet = logdet + ld
        return z, logdet

    def sample(self, lengths, temperature=1.0, generator=None):
        eps = self._draw_eps(lengths, temperature, generator)  # [B, T, H]
        T = eps.shape[1]
        position = self.position(lengths, T)
        index = reverse_within_length(lengths, T)
        v, inv_logdet = eps, eps.new_zeros(eps.shape[:2])
        for block in reversed(self.blocks):
            v, ld = block.sample(v, position, index)
            inv_logdet = inv_logdet + ld
        return self._finish(v, eps, inv_logdet, lengths)
