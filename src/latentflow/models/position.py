"""Length conditioning (paper Supp. C): at every step, the distance from the start and the
distance from the end, each a one-hot vector. A one-hot times a weight matrix is an embedding
lookup, so each consumer owns an ``nn.Embedding`` per one-hot (same function, no wasted matmul).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def sequence_mask(lengths: Tensor, max_len: int | None = None) -> Tensor:
    """``mask[b, t] = t < lengths[b]`` as a bool tensor [B, T]."""
    T = int(lengths.max()) if max_len is None else max_len
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]


class LengthConditioning(nn.Module):
    """Features of (t, T - 1 - t) for each step: ``[B, T, 2 * dim]``.

    Positions at or past ``max_length`` share the last embedding row (clamped), so sequences
    longer than any seen in training are still accepted.
    """

    def __init__(self, max_length: int, dim: int) -> None:
        super().__init__()
        if max_length < 1 or dim < 1:
            raise ValueError(
                f"length conditioning needs max_length, dim >= 1 ({max_length}, {dim})"
            )
        self.max_length, self.dim = max_length, dim
        self.from_start = nn.Embedding(max_length, dim)
        self.from_end = nn.Embedding(max_length, dim)

    @property
    def out_features(self) -> int:
        return 2 * self.dim

    def forward(self, lengths: Tensor, T: int) -> Tensor:
        t = torch.arange(T, device=lengths.device)[None, :]  # [1, T]
        start = t.expand(lengths.shape[0], T)  # [B, T]
        end = (lengths[:, None] - 1 - t).clamp_min(0)  # [B, T]; padding clamps to 0
        top = self.max_length - 1
        return torch.cat(
            [self.from_start(start.clamp_max(top)), self.from_end(end.clamp_max(top))], dim=-1
        )  # [B, T, 2 * dim]
