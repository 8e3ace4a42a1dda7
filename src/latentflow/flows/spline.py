"""Monotonic rational-quadratic spline (Durkan et al., 2019, "Neural Spline Flows") as a scalar
transform: ``num_bins`` bins on [-bound, bound], identity (linear) tails outside.

Direction convention as everywhere in ``latentflow.flows``: ``forward`` maps data to noise
(z -> eps, the density direction), ``inverse`` maps noise to data. Both are analytic: within a
bin the spline is a ratio of quadratics, and its inverse is the root of a quadratic, taken in the
cancellation-free form ``theta = 2c / (-b - sqrt(b^2 - 4ac))``. So sampling is exact and as
parallel as the density.

Parameters per dimension (``num_params = 3 * num_bins - 1``), unconstrained: bin widths and
heights (softmax, each at least ``min_bin``), and the derivatives at the ``num_bins - 1`` inner
knots (softplus, at least ``min_derivative``); the derivative at both ends is 1, so the spline
meets the identity tails with a continuous slope. All-zero parameters give the identity, so a
flow whose last layer starts near zero (MADE, coupling nets) starts near the identity.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from latentflow.flows.transforms import ScalarTransform


class RationalQuadraticSpline(ScalarTransform):
    r"""A monotone rational-quadratic spline on [-B, B] with identity tails (Durkan et al.).

    In bin k, with theta = (x - x_k) / w_k, s_k = h_k / w_k and knot derivatives d_k, d_{k+1}:

    .. math:: y = y_k + \frac{h_k (s_k \theta^2 + d_k \theta (1 - \theta))}
              {s_k + (d_{k+1} + d_k - 2 s_k) \theta (1 - \theta)}

    >>> t = RationalQuadraticSpline(num_bins=4, bound=3.0)
    >>> p = torch.randn(5, t.num_params)
    >>> x = torch.linspace(-4, 4, 5)
    >>> y, ld = t(x, p)
    >>> bool(torch.allclose(t.solve(y, p), x, atol=1e-5))
    True
    """

    def __init__(
        self,
        num_bins: int,
        bound: float,
        min_bin: float = 1e-3,
        min_derivative: float = 1e-3,
    ) -> None:
        super().__init__()
        if num_bins < 1:
            raise ValueError(f"num_bins must be >= 1, got {num_bins}")
        if not 0 < bound < math.inf:
            raise ValueError(f"bound must be a finite number > 0, got {bound}")
        if not 0 <= min_bin * num_bins < 1 or not 0 < min_derivative < 1:
            raise ValueError("min_bin * num_bins must lie in [0, 1) and min_derivative in (0, 1)")
        self.num_bins, self.bound = num_bins, float(bound)
        self.min_bin, self.min_derivative = min_bin, min_derivative
        self.num_params = 3 * num_bins - 1
        # softplus(0 + shift) + min_derivative = 1: zero parameters give the identity
        self._shift = math.log(math.expm1(1.0 - min_derivative))

    def _knots(self, params: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Knot x positions, y positions [..., K + 1] and derivatives [..., K + 1]."""
        K, B = self.num_bins, self.bound
        uw, uh, ud = params[..., :K], params[..., K : 2 * K], params[..., 2 * K :]

        def positions(u: Tensor) -> Tensor:
            sizes = self.min_bin + (1 - self.min_bin * K) * torch.softmax(u, -1)  # [..., K]
            edges = F.pad(torch.cumsum(sizes, -1), (1, 0))  # [..., K + 1], 0 .. 1
            edges = 2 * B * edges - B
            # exact ends: the tails join at -B and B whatever the rounding of the cumsum
            return torch.cat([torch.full_like(edges[..., :1], -B), edges[..., 1:-1],
                              torch.full_like(edges[..., :1], B)], -1)  # fmt: skip

        inner = self.min_derivative + F.softplus(ud + self._shift)  # [..., K - 1]
        one = torch.ones_like(params[..., :1])
        return positions(uw), positions(uh), torch.cat([one, inner, one], -1)

    def _bin(self, knots: Tensor, v: Tensor) -> Tensor:
        """Bin index [...] of v among the knots (0 .. K - 1; the tails are masked later)."""
        return (v[..., None] >= knots[..., 1:-1]).sum(-1, keepdim=True)  # [..., 1]

    def _spline(self, x: Tensor, params: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        xs, ys, ds = self._knots(params.to(x.dtype))
        inside = (x > -self.bound) & (x < self.bound)
        v = torch.where(inside, x, torch.zeros_like(x))  # tails: evaluated at 0, discarded
        k = self._bin(ys if inverse else xs, v)
        x_k, w = xs.gather(-1, k), (xs.gather(-1, k + 1) - xs.gather(-1, k))
        y_k, h = ys.gather(-1, k), (ys.gather(-1, k + 1) - ys.gather(-1, k))
        d0, d1 = ds.gather(-1, k), ds.gather(-1, k + 1)
        x_k, w, y_k, h, d0, d1 = (t.squeeze(-1) for t in (x_k, w, y_k, h, d0, d1))
        s = h / w
        curvature = d1 + d0 - 2 * s
        if inverse:
            dy = v - y_k
            a = h * (s - d0) + dy * curvature
            b = h * d0 - dy * curvature
            c = -s * dy
            disc = (b * b - 4 * a * c).clamp_min(0.0)
            theta = (2 * c) / (-b - disc.sqrt())  # the root in [0, 1], without cancellation
            out = x_k + theta * w
        else:
            theta = (v - x_k) / w
        one_minus = 1 - theta
        middle = theta * one_minus
        denominator = s + curvature * middle
        if not inverse:
            out = y_k + h * (s * theta * theta + d0 * middle) / denominator
        slope = s * s * (d1 * theta * theta + 2 * s * middle + d0 * one_minus * one_minus)
        logabsdet = torch.log(slope) - 2 * torch.log(denominator)  # log dy/dx in the bin
        if inverse:
            logabsdet = -logabsdet
        return torch.where(inside, out, x), torch.where(inside, logabsdet, torch.zeros_like(x))

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        return self._spline(x, params, inverse=False)

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        return self._spline(y, params, inverse=True)

    @torch.no_grad()
    def solve(self, y: Tensor, params: Tensor) -> Tensor:
        return self._spline(y, params, inverse=True)[0]

    def solve_float(self, y: float, params: list[float]) -> float:
        """``solve`` for one value with parameters as Python floats (the same formulas): an
        AF layer sampled at batch size 1 solves its dimensions one by one, where a tensor
        operation's overhead (microseconds each, ~40 of them here) dominates."""
        B, K = self.bound, self.num_bins
        if not -B < y < B:
            return y

        def positions(u: list[float]) -> list[float]:
            top = max(u)
            e = [math.exp(v - top) for v in u]
            total = sum(e)
            edges, acc = [0.0], 0.0
            for v in e:
                acc += self.min_bin + (1 - self.min_bin * K) * v / total
                edges.append(2 * B * acc - B)
            edges[0], edges[-1] = -B, B
            return edges

        xs, ys = positions(params[:K]), positions(params[K : 2 * K])
        ds = [1.0]
        for v in params[2 * K :]:
            z = v + self._shift
            ds.append(self.min_derivative + (z if z > 20 else math.log1p(math.exp(z))))  # softplus
        ds.append(1.0)
        k = sum(1 for knot in ys[1:-1] if y >= knot)
        w, h = xs[k + 1] - xs[k], ys[k + 1] - ys[k]
        s_k, d0, d1 = h / w, ds[k], ds[k + 1]
        curvature = d1 + d0 - 2 * s_k
        dy = y - ys[k]
        a = h * (s_k - d0) + dy * curvature
        b = h * d0 - dy * curvature
        c = -s_k * dy
        theta = (2 * c) / (-b - math.sqrt(max(b * b - 4 * a * c, 0.0)))
        return xs[k] + theta * w

    def extra_repr(self) -> str:
        return f"num_bins={self.num_bins}, bound={self.bound}"
