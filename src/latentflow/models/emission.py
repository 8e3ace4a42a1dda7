"""Emission distributions p(x_t | features): Categorical (text) and 88 Bernoullis (music)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

PAD_ID = 0


def emission_log_prob(logits: Tensor, x: Tensor, mask: Tensor, text: bool) -> Tensor:
    """Sum over valid steps of log p(x_t | .): logits [B, T, V|88], x [B, T] | [B, T, 88],
    mask [B, T] -> [B]."""
    if text:
        lp = -F.cross_entropy(logits.transpose(1, 2), x, reduction="none")  # [B, T]
    else:
        lp = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)  # [B, T]
    return lp.masked_fill(~mask, 0.0).sum(-1)


def emission_sample(
    logits: Tensor,
    text: bool,
    argmax: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """A real draw from p(x | .) (or its mode with ``argmax``): [B, T] ids or [B, T, 88].

    For text the padding id 0 is never emitted (it is not a symbol of the language).
    """
    if text:
        logits = logits.clone()
        logits[..., PAD_ID] = float("-inf")
        if argmax:
            return logits.argmax(-1)
        probs = logits.float().softmax(-1).cpu()
        flat = torch.multinomial(probs.flatten(0, 1), 1, generator=generator)
        return flat.view(logits.shape[:-1]).to(logits.device)
    probs = logits.float().sigmoid()
    if argmax:
        return (probs > 0.5).to(logits.dtype)
    u = torch.rand(probs.shape, generator=generator).to(logits.device)
    return (u < probs).to(logits.dtype)
