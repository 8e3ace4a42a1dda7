"""The toy problem of paper Fig. 5c: a 2-D mixture of four Gaussians fitted by a 5-layer AF.

With the NLSq transform the flow separates the four modes; with the affine transform it cannot
(the paper, after Huang et al. 2018). Used by ``latentflow.plotting`` and the learning test.

>>> gen = torch.Generator().manual_seed(0)
>>> sample_mixture(3, gen).shape
torch.Size([3, 2])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from latentflow.flows import AutoregressiveFlow, FlowStack, standard_normal_log_prob
from latentflow.flows.hidden import TransformFactory

# Means at (+-2.5, 0) and (0, +-2.5), standard deviation 0.2: four well separated modes.
MEANS = torch.tensor([[-2.5, 0.0], [2.5, 0.0], [0.0, -2.5], [0.0, 2.5]])
STD = 0.2


def sample_mixture(n: int, generator: torch.Generator) -> Tensor:
    """``n`` draws from the equal-weight mixture: [n, 2]."""
    idx = torch.randint(0, 4, (n,), generator=generator)
    return MEANS[idx] + STD * torch.randn(n, 2, generator=generator)  # [n, 2]


def mixture_log_prob(x: Tensor) -> Tensor:
    """Exact log-density of the mixture at ``x`` [n, 2]: [n]."""
    means = MEANS.to(x)
    sq = ((x[:, None, :] - means) ** 2).sum(-1) / (2 * STD**2)  # [n, 4]
    return torch.logsumexp(-sq, 1) - math.log(4) - math.log(2 * math.pi * STD**2)


def flow_log_prob(flow: FlowStack, x: Tensor) -> Tensor:
    """log p(x) of an unconditional flow (data -> noise): [n]."""
    u, logabsdet = flow(x)
    return standard_normal_log_prob(u) + logabsdet


@dataclass
class ToyFit:
    """A fitted flow, its test NLL (nats) and the Monte-Carlo entropy of the true mixture."""

    transform: str
    flow: FlowStack
    nll: float
    entropy: float

    @property
    def gap(self) -> float:
        """NLL minus entropy: the KL from the mixture to the flow (0 for a perfect fit)."""
        return self.nll - self.entropy


def fit_mixture_flow(
    transform: TransformFactory,
    steps: int = 800,
    seed: int = 0,
    num_layers: int = 5,
    hidden_features: int = 64,
    batch_size: int = 256,
    lr: float = 5e-3,
    test_size: int = 20000,
) -> ToyFit:
    """Train a ``num_layers``-layer AF with ``transform`` (a factory: ``NLSq``, ``Affine``, a
    ``functools.partial``) by maximum likelihood
    (Adam, cosine schedule) on fresh mixture samples; evaluate on ``test_size`` held-out draws.

    Seed 0, 800 steps, 1 thread: entropy 0.995, NLSq gap 0.033 nats, affine gap 0.252.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    gen = torch.Generator().manual_seed(seed)
    test = sample_mixture(test_size, gen)  # [N, 2]
    entropy = -mixture_log_prob(test).mean().item()
    torch.manual_seed(seed)
    flow = AutoregressiveFlow(
        2,
        0,
        transform=transform,
        num_layers=num_layers,
        hidden_features=hidden_features,
        num_hidden_layers=2,
    )
    opt = torch.optim.Adam(flow.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    with torch.enable_grad():  # also when called under no_grad
        for _ in range(steps):
            loss = -flow_log_prob(flow, sample_mixture(batch_size, gen)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    flow.eval()
    with torch.no_grad():
        nll = -flow_log_prob(flow, test).mean().item()
    return ToyFit(transform_name(transform), flow, nll, entropy)


def transform_name(transform: TransformFactory) -> str:
    """A short name for a transform factory: ``nlsq``, ``affine``, ``spline`` ..."""
    func = getattr(transform, "func", transform)  # functools.partial
    return getattr(func, "__name__", type(func).__name__).lower()
