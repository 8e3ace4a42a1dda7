"""Paper Fig. 5c: a 5-layer AF with NLSq vs affine fitted to a mixture of four Gaussians
(``latentflow.toy``), the test NLL of each and the true entropy in the titles."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.figure import Figure
from torch import Tensor

from latentflow.flows import Affine, NLSq
from latentflow.plotting.figure import PathLike, new_figure, save_figure
from latentflow.toy import MEANS, ToyFit, fit_mixture_flow, flow_log_prob, mixture_log_prob


def density_grid(lim: float, size: int) -> tuple[Tensor, list[float]]:
    """The points of a ``size`` x ``size`` grid over [-lim, lim]^2, [size * size, 2] (x varies
    fastest), and its extent [x0, x1, y0, y1] for ``imshow``."""
    axis = torch.linspace(-lim, lim, size)
    gy, gx = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([gx.flatten(), gy.flatten()], -1), [-lim, lim, -lim, lim]


def toy_panels(fits: Sequence[ToyFit], points: Tensor) -> list[tuple[str, Tensor]]:
    """(title, density at ``points``) of the true mixture, then of each fitted flow."""
    with torch.no_grad():
        panels = [("data: mixture of 4 Gaussians", mixture_log_prob(points).exp())]
        for f in fits:
            density = flow_log_prob(f.flow, points).exp()
            title = f"AF-{'NLSq' if f.transform == 'nlsq' else f.transform}: NLL {f.nll:.3f}"
            panels.append((title, density))
    return panels


def plot_toy_densities(
    fits: Sequence[ToyFit] | None = None,
    steps: int = 800,
    seed: int = 0,
    lim: float = 4.0,
    grid_size: int = 200,
    path: PathLike | None = None,
    dpi: int = 110,
) -> Figure:
    """Paper Fig. 5c: the true mixture of four Gaussians, then the density each fitted flow
    learned, titled with its test NLL; the suptitle gives the mixture's entropy (the best NLL
    any model can reach). Without ``fits``, fits AF-affine and AF-NLSq (``steps``, ``seed``)."""
    if fits is None:
        fits = [fit_mixture_flow(t, steps=steps, seed=seed) for t in (Affine, NLSq)]
    if not fits:
        raise ValueError("plot_toy_densities needs at least one fit")
    points, extent = density_grid(lim, grid_size)
    panels = toy_panels(fits, points)
    fig = new_figure(3.0 * len(panels), 3.3)
    for ax, (title, density) in zip(fig.subplots(1, len(panels)), panels, strict=True):
        # Far from the data an unstable fit can overflow (inf - inf = nan): show no mass there.
        image = density.view(grid_size, grid_size).nan_to_num(0.0, 0.0, 0.0).numpy()
        ax.imshow(image, origin="lower", extent=extent, cmap="magma", interpolation="bilinear")
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    layers = len(fits[0].flow.layers)
    fig.suptitle(
        f"{layers}-layer AF fitted to 4 Gaussians at {MEANS.abs().max().item():g} "
        f"(test NLL in nats; true entropy {fits[0].entropy:.3f})",
        fontsize=10,
    )
    return save_figure(fig, path, dpi)
