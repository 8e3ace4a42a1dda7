"""The empirical length distribution p(T) of a dataset, add-alpha smoothed (paper Section 6).

The model's likelihood of a sequence includes log p(T), so reported NLLs count the length term.
`fit_length_distribution` is the one place a datamodule's p(T) is built from its lengths.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn


class LengthDistribution(nn.Module):
    r"""A categorical distribution over lengths T in 1..max_length.

    .. math:: p(T) = \frac{c_T + \alpha}{\sum_{t=1}^{M} c_t + \alpha M}, \quad 1 \le T \le M

    with counts :math:`c_T`, smoothing :math:`\alpha` and support size :math:`M` = max_length.
    With :math:`\alpha > 0` every length in the support has finite log-probability, also one
    never seen in the counts (an evaluation length absent from train). Lengths outside
    1..max_length have probability 0: `log_prob` returns -inf for them.

    `counts` (index = T, index 0 ignored) and `log_probs` are float64 buffers, so the state
    loads into a fresh `LengthDistribution(torch.zeros(max_length + 1), smoothing)`. An
    all-zero placeholder with `smoothing=0` has no mass (log_probs all -inf) until a state dict
    is loaded.

    Args:
        counts: [max_length + 1] number of sequences of each length T (index = T).
        smoothing: alpha >= 0, added to every count in 1..max_length.

    >>> p = LengthDistribution.from_lengths([2, 2, 3], max_length=4, smoothing=1.0)
    >>> (p.log_prob(torch.tensor([2, 5])).exp() * 7).round().tolist()  # (2 + 1) / (3 + 4)
    [3.0, 0.0]
    """

    counts: Tensor
    log_probs: Tensor

    def __init__(self, counts: Tensor, smoothing: float = 1.0) -> None:
        super().__init__()
        counts = torch.as_tensor(counts, dtype=torch.float64).detach().clone()
        if counts.dim() != 1 or counts.numel() < 2:
            raise ValueError(f"counts must be 1-D of size max_length + 1 >= 2, got {counts.shape}")
        if not bool(torch.isfinite(counts).all()) or bool((counts < 0).any()):
            raise ValueError("counts must be finite and non-negative")
        if not smoothing >= 0 or math.isinf(smoothing):
            raise ValueError(f"data.length_smoothing must be finite and >= 0, got {smoothing}")
        self.smoothing = float(smoothing)
        counts[0] = 0.0  # T = 0 is not a sequence
        mass = counts + self.smoothing  # [M + 1]
        mass[0] = 0.0
        total = mass.sum()
        if total > 0:
            log_probs = mass.log() - total.log()  # [M + 1]
        else:
            log_probs = torch.full_like(mass, -math.inf)
        self.register_buffer("counts", counts)
        self.register_buffer("log_probs", log_probs)

    @classmethod
    def from_lengths(
        cls, lengths: Sequence[int], max_length: int, smoothing: float = 1.0
    ) -> LengthDistribution:
        """Histogram of `lengths` over 1..max_length; a length outside it is a ValueError."""
        lengths_t = torch.as_tensor(list(lengths), dtype=torch.long)
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        if lengths_t.numel() and (lengths_t.min() < 1 or lengths_t.max() > max_length):
            raise ValueError(
                f"lengths must lie in 1..{max_length}, got {lengths_t.min().item()}.."
                f"{lengths_t.max().item()}"
            )
        counts = torch.bincount(lengths_t, minlength=max_length + 1).to(torch.float64)
        return cls(counts, smoothing)

    @classmethod
    def empty(cls, max_length: int) -> LengthDistribution:
        """An all-zero placeholder over 1..max_length with no mass: what a model holds until
        ``load_state_dict`` (a checkpoint) fills it."""
        return cls(torch.zeros(max_length + 1), smoothing=0.0)

    @property
    def max_length(self) -> int:
        """The largest length with non-zero probability (when smoothing > 0)."""
        return self.log_probs.numel() - 1

    def extra_repr(self) -> str:
        return f"max_length={self.max_length}, smoothing={self.smoothing}"

    def log_prob(self, lengths: Tensor) -> Tensor:
        """log p(T) for a tensor of lengths (any shape); -inf outside 1..max_length."""
        lengths = lengths.to(self.log_probs.device)
        inside = (lengths >= 1) & (lengths <= self.max_length)
        safe = torch.where(inside, lengths, torch.zeros_like(lengths))
        out = self.log_probs[safe]  # same shape as lengths
        return out.masked_fill(~inside, -math.inf)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw `n` lengths as a LongTensor[n] (on the buffers' device).

        Sampling runs on the CPU (cheap), so `generator` must be a CPU generator.
        """
        probs = self.log_probs.detach().to("cpu", torch.float64).exp()  # [M + 1]
        if not probs.sum() > 0:
            raise ValueError("the length distribution has no mass: load a state dict first")
        draws = torch.multinomial(probs, n, replacement=True, generator=generator)  # [n]
        return draws.to(self.log_probs.device)


MUSIC_HEADROOM = 1.25  # the music reference's support: 1..ceil(1.25 x the longest seen)


def fit_length_distribution(
    counted: Sequence[Sequence[int]], smoothing: float, support: int | None = None
) -> LengthDistribution:
    """p(T): the add-``smoothing`` histogram of the lengths of every array in ``counted`` (e.g.
    train only, or train and valid) over 1..``support``; ``support=None`` gives
    1..ceil(1.25 x the longest counted length), as the music reference builds it."""
    seen = np.concatenate([np.asarray(lengths, dtype=np.int64) for lengths in counted])
    if support is None:
        support = math.ceil(MUSIC_HEADROOM * int(seen.max())) if len(seen) else 1
    return LengthDistribution.from_lengths(seen.tolist(), support, smoothing)
