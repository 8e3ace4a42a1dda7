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

import torch
from torch import Tensor, nn

# c = (8 sqrt(3) / (9 d)) * b * alpha * tanh(c'): the invertibility bound b > 9/(8 sqrt 3) |c| d.
_NLSQ_BOUND = 8.0 * math.sqrt(3.0) / 9.0


class ScalarTransform(nn.Module):
    """Base class: an elementwise bijection parameterised by ``params[..., num_params]``."""

    num_params: int = 0

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError


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

    ``forward`` is the closed form (density direction); ``inverse`` solves the cubic in float64
    (Cardano start, then a bracketed Newton polish) and is differentiable through one implicit
    Newton step.

    >>> t = NLSq()
    >>> p = torch.tensor([[0.1, 0.2, 3.0, -0.5, 0.3]])
    >>> y, _ = t(torch.tensor([0.7]), p)
    >>> x, _ = t.inverse(y, p)
    >>> round(x.item(), 5)
    0.7
    """

    num_params = 5

    def __init__(self, alpha: float = 0.95, newton_steps: int = 8) -> None:
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

    def _solve(
        self, y: Tensor, a: Tensor, log_b: Tensor, log_d: Tensor, g: Tensor, k: Tensor
    ) -> Tensor:
        """Unique real root of f(x) = y, float64 (Supp. B)."""
        b, d = log_b.exp(), log_d.exp()
        c = k * torch.exp(log_b - log_d)
        # In w = d x + g the equation reads (w - s)(1 + w^2) + k = 0 with s = (y - a) d / b + g,
        # i.e. the monic cubic w^3 - s w^2 + w + (k - s) = 0. Depressed form t^3 + p t + q = 0.
        s = (y - a) * d / b + g
        s_c = s.clamp(-1e4, 1e4)  # far out, Cardano cancels badly; use the asymptotic root
        p = 1.0 - s_c * s_c / 3.0
        q = -2.0 * s_c**3 / 27.0 - 2.0 * s_c / 3.0 + k
        disc = (q / 2.0) ** 2 + (p / 3.0) ** 3
        sq = disc.clamp_min(0.0).sqrt()
        t = _cbrt(-q / 2.0 + sq) + _cbrt(-q / 2.0 - sq)
        w = torch.where(s.abs() < 1e4, t + s_c / 3.0, s - k / (1.0 + s * s))
        x = (w - g) / d
        # Bracket: y - a - b x = c / (1 + w^2) lies between min(c, 0) and max(c, 0).
        lo = (y - a - c.clamp_min(0.0)) / b
        hi = (y - a - c.clamp_max(0.0)) / b
        x = torch.minimum(torch.maximum(x, lo), hi)
        for _ in range(self.newton_steps):  # safeguarded Newton: f is increasing
            fx, _, slope = self._eval(x, a, log_b, log_d, g, k)
            r = fx - y
            lo = torch.where(r < 0, x, lo)
            hi = torch.where(r > 0, x, hi)
            step = x - r / slope
            inside = (step >= lo) & (step <= hi)
            x = torch.where(r == 0, x, torch.where(inside, step, 0.5 * (lo + hi)))
        return x


def _cbrt(v: Tensor) -> Tensor:
    return v.sign() * v.abs().pow(1.0 / 3.0)


TRANSFORMS: dict[str, type[ScalarTransform]] = {"affine": Affine, "nlsq": NLSq}


def make_transform(name: str) -> ScalarTransform:
    """Scalar transform by name (``affine`` or ``nlsq``); ValueError naming the key otherwise."""
    if name not in TRANSFORMS:
        raise ValueError(f"transform.name must be one of {sorted(TRANSFORMS)}, got {name!r}")
    return TRANSFORMS[name]()
