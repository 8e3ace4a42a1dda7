"""Mixture-of-logistics CDF coupling transform (Ho et al., 2019, "Flow++", Eq. 7), the scalar
transform of TarFlowLM (Zhang et al., 2025), as a ``ScalarTransform`` (``transform=mixture_cdf``).

Density direction (data -> noise), with K components of weights pi, means m, log-scales s:

    F(x) = sum_k pi_k sigmoid((x - m_k) exp(-s_k)),   y = a + exp(b') logit(F(x))

A mixture CDF is monotone and maps R onto (0, 1); its logit maps back onto R, so the transform
is a bijection of R whose density can be multimodal (the point of the 2019 paper's Sec. 4 for
the latents of discrete data). Far out it is affine: logit F(x) tends to (x - m_k) exp(-s_k) of
the widest component on each side.

float32 at the tails: log F and log(1 - F) are each a logsumexp of log-sigmoids, never 1 - F,
so logit F = log F - log(1 - F) and the log-derivative stay finite and accurate where F rounds
to 0 or 1 (|x| = 1e4 in float32: relative error below 1e-6 against float64, tests).

Inverse: no closed form. ``solve`` finds the root in float64 by Newton's method safeguarded by
bisection: logit F(x) lies between the smallest and the largest (x - m_k) exp(-s_k), so the root
lies in [min_k, max_k] of m_k + v exp(s_k) (v = (y - a) exp(-b')), an exact bracket that each
step shrinks; a Newton step that leaves it is replaced by the midpoint. It stops once a step
moves x by at most ``tolerance * (1 + |x|)`` (default 1e-10; Newton's last step then leaves an
error of the order of its square) or after ``max_iterations`` (default 100: enough for plain
bisection of any float64 bracket to that tolerance). ``inverse`` adds one Newton step with
gradients attached, which makes the root differentiable (exact first-order gradients).

Parameters per dimension (``num_params = 3K + 2``), unconstrained: K weight logits, K means
(plus fixed offsets spread over [-1, 1], so that components start apart and zero parameters do
not tie them together), K log-scales (clamped at -7, Flow++'s), the shift a and log-scale b'.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from latentflow.flows.transforms import ScalarTransform

LOG_SCALE_MIN = -7.0


def logit_cdf(x: Tensor, log_w: Tensor, mean: Tensor, log_s: Tensor) -> tuple[Tensor, Tensor]:
    """``(logit F(x), log dlogitF/dx)`` elementwise: x [...], the mixture's [..., K]."""
    u = (x[..., None] - mean) * torch.exp(-log_s)  # [..., K]
    lo, hi = F.logsigmoid(u), F.logsigmoid(-u)  # log sigma(u), log (1 - sigma(u))
    log_f = torch.logsumexp(log_w + lo, -1)  # log F
    log_1mf = torch.logsumexp(log_w + hi, -1)  # log (1 - F)
    log_pdf = torch.logsumexp(log_w - log_s + lo + hi, -1)  # log F'
    return log_f - log_1mf, log_pdf - log_f - log_1mf


def _log_sigmoid(u: float) -> float:
    return -(max(-u, 0.0) + math.log1p(math.exp(-abs(u))))


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def logit_cdf_float(x: float, log_w: list[float], mean: list[float], log_s: list[float]):
    """``logit_cdf`` for one value in Python floats (batch-1 AF sampling): the same formulas."""
    lo, hi, pdf = [], [], []
    for w, m, s in zip(log_w, mean, log_s, strict=True):
        u = (x - m) * math.exp(-s)
        a, b = _log_sigmoid(u), _log_sigmoid(-u)
        lo.append(w + a)
        hi.append(w + b)
        pdf.append(w - s + a + b)
    log_f, log_1mf = _logsumexp(lo), _logsumexp(hi)
    return log_f - log_1mf, _logsumexp(pdf) - log_f - log_1mf


class MixtureLogisticCDF(ScalarTransform):
    r"""``y = a + exp(b') logit(sum_k pi_k sigmoid((x - m_k) / exp(s_k)))`` (Flow++ Eq. 7).

    >>> t = MixtureLogisticCDF(num_components=3)
    >>> p = torch.randn(5, t.num_params)
    >>> x = torch.linspace(-4, 4, 5)
    >>> y, ld = t(x, p)
    >>> bool(torch.allclose(t.solve(y, p), x, atol=1e-5))
    True
    """

    def __init__(
        self, num_components: int = 4, tolerance: float = 1e-10, max_iterations: int = 100
    ) -> None:
        super().__init__()
        if num_components < 1:
            raise ValueError(f"num_components must be >= 1, got {num_components}")
        if not 0 < tolerance < 1 or max_iterations < 1:
            raise ValueError("tolerance must lie in (0, 1) and max_iterations be >= 1")
        self.num_components, self.num_params = num_components, 3 * num_components + 2
        self.tolerance, self.max_iterations = tolerance, max_iterations
        offsets = torch.linspace(-1.0, 1.0, num_components) if num_components > 1 else None
        self.register_buffer("offsets", torch.zeros(1) if offsets is None else offsets, False)

    def _unpack(self, params: Tensor) -> tuple[Tensor, ...]:
        K = self.num_components
        log_w = torch.log_softmax(params[..., :K], -1)
        mean = params[..., K : 2 * K] + self.offsets.to(params)
        log_s = params[..., 2 * K : 3 * K].clamp_min(LOG_SCALE_MIN)
        return log_w, mean, log_s, params[..., 3 * K], params[..., 3 * K + 1]

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        log_w, mean, log_s, a, log_b = self._unpack(params.to(x.dtype))
        g, log_dg = logit_cdf(x, log_w, mean, log_s)
        return a + log_b.exp() * g, log_b + log_dg

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        x0 = self.solve(y, params)
        # One Newton step with gradients attached: exact first-order (implicit) gradients.
        y0, log_slope = self.forward(x0, params)
        x = x0 - (y0 - y) * torch.exp(-log_slope.detach())
        return x, -self.forward(x, params)[1]

    @torch.no_grad()
    def solve(self, y: Tensor, params: Tensor) -> Tensor:
        """The root x of ``forward(x, params) = y`` (module docstring), in y's dtype."""
        log_w, mean, log_s, a, log_b = self._unpack(params.double())
        v = (y.double() - a) * torch.exp(-log_b)  # the target of logit F
        ends = mean + v[..., None] * log_s.exp()  # [..., K]: the bracket's candidates
        lo, hi = ends.min(-1).values, ends.max(-1).values
        x = 0.5 * (lo + hi)
        for _ in range(self.max_iterations):
            g, log_dg = logit_cdf(x, log_w, mean, log_s)
            r = g - v
            lo, hi = torch.where(r <= 0, x, lo), torch.where(r >= 0, x, hi)
            step = x - r * torch.exp(-log_dg)  # Newton
            step = torch.where((step > lo) & (step < hi), step, 0.5 * (lo + hi))
            done = (step - x).abs() <= self.tolerance * (1 + x.abs())
            x = step
            if bool(done.all()):
                break
        return x.to(y.dtype)

    def solve_float(self, y: float, params: list[float]) -> float:
        """``solve`` for one value with parameters as Python floats (the same iteration): an
        AF layer sampled at batch size 1 solves its dimensions one by one."""
        K = self.num_components
        top = max(params[:K])
        norm = top + math.log(sum(math.exp(p - top) for p in params[:K]))
        log_w = [p - norm for p in params[:K]]
        mean = [p + o for p, o in zip(params[K : 2 * K], self.offsets.tolist(), strict=True)]
        log_s = [max(p, LOG_SCALE_MIN) for p in params[2 * K : 3 * K]]
        a, log_b = params[3 * K], params[3 * K + 1]
        v = (y - a) * math.exp(-log_b)
        ends = [m + v * math.exp(s) for m, s in zip(mean, log_s, strict=True)]
        lo, hi = min(ends), max(ends)
        x = 0.5 * (lo + hi)
        for _ in range(self.max_iterations):
            g, log_dg = logit_cdf_float(x, log_w, mean, log_s)
            r = g - v
            lo, hi = (x if r <= 0 else lo), (x if r >= 0 else hi)
            step = x - r * math.exp(-log_dg)
            step = step if lo < step < hi else 0.5 * (lo + hi)
            done = abs(step - x) <= self.tolerance * (1 + abs(x))
            x = step
            if done:
                break
        return x

    def extra_repr(self) -> str:
        return f"num_components={self.num_components}, tolerance={self.tolerance}"
