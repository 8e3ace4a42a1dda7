"""Elementwise scalar transforms: affine and NLSq (paper Sec. 4.3, Supp. B).

Direction convention (used everywhere in ``latentflow.flows``): ``forward`` maps *data* to
*noise* (z -> eps, the density direction) and ``inverse`` maps noise to data (sampling). Both
return ``(output, logabsdet)`` with the elementwise ``log |d output / d input|``.

The paper writes NLSq as ``z = f(eps) = a + b eps + c / (1 + (d eps + g)^2)`` and notes (Supp. B)
that the closed form is cheaper than its inverse (a cubic), so the closed form is used for the
density direction. We do the same: ``NLSq.forward`` is the closed form, ``NLSq.inverse`` solves
the cubic. Parameters arrive unconstrained, last dimension holding ``num_params`` values, and each
transform applies its own constraints.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

# c = (8 sqrt(3) / (9 d)) * b * alpha * tanh(c'): the invertibility bound b > 9/(8 sqrt 3) |c| d.
_NLSQ_BOUND = 8.0 * math.sqrt(3.0) / 9.0
# |s| is clipped here before Cardano's formula (s^4 must not overflow); past it f is affine to
# double precision and the Newton step lands on the root.
_FAR = 1e60


class ScalarTransform(nn.Module):
    """Base class: an elementwise bijection parameterised by ``params[..., num_params]``
    (the contract is ``latentflow.protocols.ScalarTransform``; subclassing is optional)."""

    num_params: int = 0

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError

    @torch.no_grad()
    def solve(self, y: Tensor, params: Tensor) -> Tensor:
        """The x with ``forward(x, params)[0] == y``, without log-det or gradient (sampling)."""
        return self.inverse(y, params)[0]


class Affine(ScalarTransform):
    r"""Monotone affine map ``y = a + exp(b') x``.

    ``params[..., 0] = a``, ``params[..., 1] = b'`` (log-scale).

    >>> t = Affine()
    >>> y, ld = t(torch.tensor([1.0]), torch.tensor([[0.5, 0.0]]))
    >>> y.item(), ld.item()
    (1.5, 0.0)
    """

    num_params = 2

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        a, log_b = params.unbind(-1)
        return a + log_b.exp() * x, log_b

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        a, log_b = params.unbind(-1)
        return (y - a) * torch.exp(-log_b), -log_b


class NLSq(ScalarTransform):
    r"""Non-linear squared flow ``y = a + b x + c / (1 + (d x + g)^2)`` (paper Eq. 1).

    ``params[..., :] = (a, b', c', d', g)`` unconstrained; ``b = exp(b')``, ``d = exp(d')``,
    ``c = 8 sqrt(3) / (9 d) * b * alpha * tanh(c')`` with ``alpha = 0.95`` (Supp. B), which keeps
    ``dy/dx >= (1 - alpha) b > 0`` everywhere.

    ``forward`` is the closed form (density direction). ``solve`` finds the root of the cubic in
    float64 (cancellation-free Cardano, then ``newton_steps`` Newton steps): the sampling path.
    ``inverse`` is that root made differentiable by one implicit Newton step (exact first-order
    gradients), with its log-det.

    >>> t = NLSq()
    >>> p = torch.tensor([[0.1, 0.2, 3.0, -0.5, 0.3]])
    >>> y, _ = t(torch.tensor([0.7]), p)
    >>> x, _ = t.inverse(y, p)
    >>> round(x.item(), 5)
    0.7
    """

    num_params = 5

    def __init__(self, alpha: float = 0.95, newton_steps: int = 1) -> None:
        super().__init__()
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"transform.alpha must lie in (0, 1), got {alpha}")
        self.alpha = alpha
        self.newton_steps = newton_steps

    def _unpack(self, params: Tensor) -> tuple[Tensor, ...]:
        a, log_b, c_raw, log_d, g = params.unbind(-1)
        k = _NLSQ_BOUND * self.alpha * torch.tanh(c_raw)  # k = c d / b, |k| < 1.54 alpha
        return a, log_b, log_d, g, k

    @staticmethod
    def _eval(x: Tensor, a: Tensor, log_b: Tensor, log_d: Tensor, g: Tensor, k: Tensor):
        b, d = log_b.exp(), log_d.exp()
        w = d * x + g
        q = 1.0 + w * w
        y = a + b * x + (k * torch.exp(log_b - log_d)) / q
        # dy/dx = b (1 - 2 k w / q^2); the bracket is >= 1 - alpha > 0 by construction.
        slope_rel = 1.0 - 2.0 * k * w / (q * q)
        return y, log_b + torch.log(slope_rel), b * slope_rel

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        a, log_b, log_d, g, k = self._unpack(params)
        y, logabsdet, _ = self._eval(x, a, log_b, log_d, g, k)
        return y, logabsdet

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        a, log_b, log_d, g, k = self._unpack(params)
        with torch.no_grad():
            x0 = self._solve(*(t.detach().double() for t in (y, a, log_b, log_d, g, k)))
            x0 = x0.to(y.dtype)
        # One Newton step with gradients attached gives exact first-order (implicit) gradients.
        y0, _, slope = self._eval(x0, a, log_b, log_d, g, k)
        x = x0 - (y0 - y) / slope.detach()
        _, logabsdet, _ = self._eval(x, a, log_b, log_d, g, k)
        return x, -logabsdet

    @torch.no_grad()
    def solve(self, y: Tensor, params: Tensor) -> Tensor:
        """The root x of ``forward(x, params) = y`` (no log-det, no gradient), in y's dtype."""
        a, log_b, log_d, g, k = self._unpack(params.double())
        return self._solve(y.double(), a, log_b, log_d, g, k).to(y.dtype)

    def _solve(
        self, y: Tensor, a: Tensor, log_b: Tensor, log_d: Tensor, g: Tensor, k: Tensor
    ) -> Tensor:
        return nlsq_root(y - a, log_b.exp(), log_d.exp(), g, k, self.newton_steps, _TENSOR)

    def solve_float(self, y: float, params: list[float]) -> float:
        """``solve`` for one value with parameters as Python floats: the same arithmetic
        (``nlsq_root``). Sampling an AF layer at batch size 1 solves H scalar equations in
        sequence, where a tensor operation's overhead (microseconds) dominates."""
        a, log_b, c_raw, log_d, g = params
        k = _NLSQ_BOUND * self.alpha * math.tanh(c_raw)
        return nlsq_root(y - a, math.exp(log_b), math.exp(log_d), g, k, self.newton_steps, _FLOAT)


class _Ops(NamedTuple):
    sqrt: Callable[[Any], Any]
    copysign: Callable[[Any, Any], Any]
    clamp: Callable[[Any, float, float], Any]


_TENSOR = _Ops(torch.sqrt, torch.copysign, torch.clamp)
_FLOAT = _Ops(math.sqrt, math.copysign, lambda v, lo, hi: min(max(v, lo), hi))


def nlsq_root(ya: Any, b: Any, d: Any, g: Any, k: Any, newton_steps: int, ops: _Ops) -> Any:
    """The unique real x with ``b x + k (b / d) / (1 + (d x + g)^2) = ya`` (Supp. B), in the
    arithmetic of its arguments (float64 tensors, or Python floats with ``_FLOAT``): the one
    cubic solver, used by ``NLSq.solve``, ``NLSq.inverse`` and ``NLSq.solve_float``.

    In w = d x + g the equation reads (w - s)(1 + w^2) + k = 0 with s = ya d / b + g, i.e. the
    monic cubic w^3 - s w^2 + w + (k - s) = 0; with w = t + s / 3 its depressed form is
    t^3 + p t + q = 0. f is increasing, so the cubic has one real root and its discriminant
    (q/2)^2 + (p/3)^3 is > 0. Both the discriminant (expanded, so its s^6 terms cancel exactly)
    and the root (t = u - p / 3u, u^3 of the sign of -q) avoid cancellation; ``newton_steps``
    Newton steps in x then polish the residual (and finish the job where s was clipped to
    +-1e60: there f is affine to double precision).
    """
    c = k * b / d
    s = ops.clamp(g + ya * (d / b), -_FAR, _FAR)
    s2, ks = s * s, k * s
    q = s * (s2 * (-2.0 / 27.0) - 2.0 / 3.0) + k
    disc = ((s2 - ks + 2.0) * s2 - 9.0 * ks + 1.0) / 27.0 + 0.25 * k * k
    root = -(ops.copysign(ops.sqrt(ops.clamp(disc, 0.0, math.inf)), q) + 0.5 * q)
    u = ops.copysign(abs(root) ** (1.0 / 3.0), root)
    x = (u - (s2 * (-1.0 / 9.0) + 1.0 / 3.0) / u + s * (1.0 / 3.0) - g) / d
    for _ in range(newton_steps):
        w = d * x + g
        q = 1.0 + w * w
        x = x - (b * x - ya + c / q) / ((k * w / (q * q) * -2.0 + 1.0) * b)
    return x
