"""Paper Fig. 5a/b: hand-set NLSq layers and the density they map a standard Gaussian to (one
smooth bijection, several modes)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from latentflow.flows import NLSq
from latentflow.plotting.figure import PathLike, new_figure, save_figure

# Four NLSq layers (raw parameters a, log b, c', log d, g as ``NLSq`` takes them), applied in
# the density direction z -> eps. Each is the identity plus a narrow bump (d = 3, c' = 3: the
# slope dips close to its bound (1 - alpha) b on one side of the bump); the bumps sit at
# z = -1.2, 0, 1.2, 2.4 of their inputs, and each dip becomes a gap between two modes.
NLSQ_LAYERS: tuple[tuple[float, float, float, float, float], ...] = tuple(
    (0.0, 0.0, 3.0, math.log(3.0), -3.0 * m) for m in (-1.2, 0.0, 1.2, 2.4)
)


def nlsq_composition(
    layers: Sequence[Sequence[float]] = NLSQ_LAYERS, lim: float = 4.0, num: int = 2001
) -> dict[str, Tensor]:
    """Compose NLSq layers on a grid of z (float64): ``{"z", "eps", "log_pz"}``, each [num].

    The layers act in the density direction, eps = f_L(... f_1(z)), so the density of
    z = f^{-1}(eps), eps ~ N(0, 1), is exact from the closed forms alone:
    :math:`\\log p(z) = \\log N(f(z)) + \\sum_l \\log |f_l'|`.

    >>> out = nlsq_composition(num=4001, lim=6.0)
    >>> z = out["z"]
    >>> mass = out["log_pz"].exp().sum() * (z[1] - z[0])
    >>> round(mass.item(), 4)
    1.0
    """
    params = torch.as_tensor(layers, dtype=torch.float64)  # [L, 5]
    if params.dim() != 2 or params.shape[1] != NLSq.num_params:
        raise ValueError(f"layers must be [L, {NLSq.num_params}] raw NLSq parameters")
    transform = NLSq()
    z = torch.linspace(-lim, lim, num, dtype=torch.float64)  # [num]
    eps, logdet = z, torch.zeros_like(z)
    for p in params:
        eps, ld = transform(eps, p.expand(num, -1))
        logdet = logdet + ld
    log_pz = -0.5 * eps.square() - 0.5 * math.log(2 * math.pi) + logdet
    return {"z": z, "eps": eps, "log_pz": log_pz}


def count_modes(density: Tensor | np.ndarray) -> int:
    """Number of strict local maxima of a 1-D density on a grid."""
    d = np.diff(np.asarray(density, dtype=np.float64))
    return int(np.sum((d[:-1] > 0) & (d[1:] <= 0)))


def plot_nlsq_composition(
    layers: Sequence[Sequence[float]] = NLSQ_LAYERS,
    lim: float = 4.0,
    path: PathLike | None = None,
    dpi: int = 110,
) -> Figure:
    """Paper Fig. 5a/b: (a) the composed map eps -> z, (b) N(0, 1) (red) and the density of z
    (blue). An affine layer could only shift and scale the Gaussian; NLSq bumps split it."""
    out = nlsq_composition(layers, lim)
    z, eps, pz = out["z"].numpy(), out["eps"].numpy(), out["log_pz"].exp().numpy()
    fig = new_figure(8.0, 3.2)
    ax_a, ax_b = fig.subplots(1, 2)
    ax_a.plot(eps, z, color="tab:blue")
    ax_a.plot([-lim, lim], [-lim, lim], color="0.7", lw=0.8, ls="--", label="identity")
    ax_a.set(xlim=(-lim, lim), ylim=(-lim, lim), xlabel=r"$\epsilon$", ylabel=r"$z = f(\epsilon)$")
    ax_a.set_title(f"(a) {len(layers)} NLSq layers composed")
    ax_a.legend(loc="upper left", frameon=False)
    base = np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    ax_b.plot(z, base, color="tab:red", label=r"base $N(0, 1)$")
    ax_b.plot(z, pz, color="tab:blue", label=r"$p(z)$")
    ax_b.set(xlim=(-lim, lim), xlabel="z", ylabel="density")
    ax_b.set_title(f"(b) base and final density ({count_modes(pz)} modes)")
    ax_b.legend(loc="upper right", frameon=False)
    return save_figure(fig, path, dpi)
