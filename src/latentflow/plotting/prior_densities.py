"""Paper Fig. 6: for an H = 2 flow model, the conditional prior densities p(z_t | z_{<t}) on a
grid for each character of a string, z_{<t} drawn from q(z | x), with the encoding of every
vocabulary symbol marked."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure
from torch import Tensor, nn

from latentflow.data.vocab import PAD_TOKEN, UNK_TOKEN, WORD_BOUNDARY, CharVocab
from latentflow.flows import standard_normal_log_prob
from latentflow.models.priors import SequencePrior
from latentflow.plotting.figure import PathLike, new_figure, save_figure

# The paper's string "_groups_", inside a validation sentence of PTB (valid line 1084).
DEFAULT_TEXT = (
    "the two groups have been working together since the late 1970s long before soviet joint "
    "ventures were the rage in the west"
)
DEFAULT_FOCUS = "_groups_"


def tokenize(text: str) -> list[str]:
    """PTB characters of ``text``: spaces become ``_`` and ``<unk>`` is one token.

    >>> tokenize("a b<unk>")
    ['a', '_', 'b', '<unk>']
    """
    return re.findall(re.escape(UNK_TOKEN) + "|.", text.replace(" ", WORD_BOUNDARY))


def _find(tokens: list[str], focus: list[str]) -> int:
    for i in range(len(tokens) - len(focus) + 1):
        if tokens[i : i + len(focus)] == focus:
            return i
    raise ValueError(f"focus {''.join(focus)!r} does not occur in the text")


def prior_contexts(prior: SequencePrior, z: Tensor, lengths: Tensor) -> Tensor:
    """The context c_t that conditions the hidden flow at every step: [B, T, C].

    AF in time: c_t = net(z_{<t}); IAF in time: c_t = net(eps_{<t}); independent: position.
    """
    contexts = getattr(prior, "contexts", None)
    if contexts is None:
        raise TypeError(f"prior {type(prior).__name__} has no contexts(z, lengths) method")
    return contexts(z, lengths)


def conditional_log_density(
    prior: SequencePrior, z: Tensor, lengths: Tensor, steps: Sequence[int], points: Tensor
) -> Tensor:
    """log p(z_t = point | z_{<t}, T) for one sequence z [1, T, H] at each step in ``steps``
    and each of ``points`` [G, H]: [len(steps), G]. Evaluated at z_t itself and summed over
    t, it is ``prior.log_prob(z, lengths)``."""
    ctx = prior_contexts(prior, z, lengths)[0]  # [T, C]
    G = points.shape[0]
    out = []
    for t in steps:
        eps, logdet = prior.flow(points, ctx[t].expand(G, -1))  # [G, H], [G]
        out.append(standard_normal_log_prob(eps) + logdet)
    return torch.stack(out)  # [S, G]


def symbol_encodings(net: nn.Module, x: Tensor, t: int, symbols: Sequence[int]) -> Tensor:
    """Mean of q(z_t | x) with x_t replaced by each symbol in turn: [len(symbols), H] -- where
    the encoder puts each symbol at step t, in this context."""
    xs = x.repeat(len(symbols), 1)  # [V, T]
    xs[:, t] = torch.as_tensor(symbols, dtype=x.dtype)
    lengths = torch.full((len(symbols),), x.shape[1], dtype=torch.long)
    mu, _ = net.encode(xs, lengths)  # [V, T, H]
    return mu[:, t]


@dataclass
class PriorDensities:
    """What ``prior_densities`` computes for Fig. 6 (one panel per step)."""

    tokens: list[str]  # the whole string
    steps: list[int]  # the plotted steps
    z: Tensor  # [T, H] the sample from q(z | x)
    density: Tensor  # [S, grid, grid] p(z_t | z_{<t}) on the grid, rows = second coordinate
    extent: list[float]  # [x0, x1, y0, y1] of the grid
    symbols: list[str]  # the vocabulary symbols marked
    encodings: Tensor  # [S, V, H] mean of q(z_t | x) per symbol


def _unwrap(model: Any, vocab: Sequence[str] | CharVocab | None) -> tuple[nn.Module, CharVocab]:
    net = getattr(model, "net", model)
    if vocab is None:
        hparams = getattr(model, "hparams", None)
        vocab = hparams.get("vocab") if hparams is not None else None
    if vocab is None:
        raise ValueError(
            "vocab: pass the model's vocabulary (a checkpoint of a text model has it)"
        )
    vocab = vocab if isinstance(vocab, CharVocab) else CharVocab(list(vocab))
    prior = getattr(net, "prior", None)
    if not isinstance(prior, SequencePrior) or not getattr(net, "text", False):
        raise ValueError("prior densities need a text flow model (a LatentFlowModel with a prior)")
    if prior.latent_dim != 2:
        raise ValueError(
            f"prior.latent_dim must be 2 to plot prior densities, got {prior.latent_dim}"
        )
    return net, vocab


def focus_steps(tokens: list[str], focus: str | None, max_panels: int) -> list[int]:
    """The steps of ``focus`` inside ``tokens`` (every step when None), at most
    ``max_panels``."""
    if not focus:
        return list(range(len(tokens)))[:max_panels]
    start = _find(tokens, tokenize(focus))
    return list(range(start, start + len(tokenize(focus))))[:max_panels]


def covering_extent(points: Tensor) -> list[float]:
    """A square [x0, x1, y0, y1] around ``points`` [N, 2] with a margin."""
    lo, hi = points.min(0).values, points.max(0).values
    mid, half = (lo + hi) / 2, 0.6 * float((hi - lo).max().clamp_min(1.0))
    return [float(v) for v in (mid[0] - half, mid[0] + half, mid[1] - half, mid[1] + half)]


def grid_points(extent: Sequence[float], size: int) -> Tensor:
    """The points of a ``size`` x ``size`` grid over ``extent``: [size * size, 2], x fastest."""
    gx = torch.linspace(extent[0], extent[1], size)
    gy = torch.linspace(extent[2], extent[3], size)
    yy, xx = torch.meshgrid(gy, gx, indexing="ij")
    return torch.stack([xx.flatten(), yy.flatten()], -1)


@torch.no_grad()
def prior_densities(
    model: Any,
    text: str = DEFAULT_TEXT,
    focus: str | None = DEFAULT_FOCUS,
    vocab: Sequence[str] | CharVocab | None = None,
    grid_size: int = 150,
    extent: Sequence[float] | None = None,
    seed: int = 0,
    max_panels: int = 16,
) -> PriorDensities:
    """The numbers behind Fig. 6 (see ``plot_prior_densities``)."""
    net, vocab = _unwrap(model, vocab)
    tokens = tokenize(text)
    unknown = sorted({s for s in tokens if s not in vocab and s != UNK_TOKEN})
    if unknown:
        raise ValueError(f"text: symbols not in the model's vocabulary: {unknown}")
    if not tokens:
        raise ValueError("text must not be empty")
    steps = focus_steps(tokens, focus, max_panels)
    was_training = net.training
    net.eval()
    try:
        x = torch.tensor([vocab.encode(tokens)])  # [1, T]
        lengths = torch.tensor([len(tokens)])
        mu, logvar = net.encode(x, lengths)  # [1, T, H]
        noise = torch.randn(mu.shape, generator=torch.Generator().manual_seed(seed)).to(mu)
        z = mu + torch.exp(0.5 * logvar) * noise  # [1, T, H], z ~ q(z | x)
        ids = [i for i, s in enumerate(vocab.symbols) if s not in (PAD_TOKEN, UNK_TOKEN)]
        enc = torch.stack([symbol_encodings(net, x, t, ids) for t in steps])  # [S, V, H]
        if extent is None:  # every mark must be on the grid
            extent = covering_extent(torch.cat([enc.reshape(-1, 2), z[0, steps]]))
        extent = [float(v) for v in extent]
        points = grid_points(extent, grid_size).to(mu)  # [G, 2]
        log_p = conditional_log_density(net.prior, z, lengths, steps, points)  # [S, G]
    finally:
        net.train(was_training)
    return PriorDensities(
        tokens=tokens,
        steps=steps,
        z=z[0].cpu(),
        density=log_p.exp().view(len(steps), grid_size, grid_size).cpu(),
        extent=extent,
        symbols=[vocab.symbols[i] for i in ids],
        encodings=enc.cpu(),
    )


def draw_prior_panel(
    ax: Axes, d: PriorDensities, i: int, gamma: float, label_symbols: bool
) -> None:
    """Panel ``i`` of Fig. 6: the density of step ``d.steps[i]``, the symbols' encodings
    (white; the true symbol red) and the sampled z_t (red cross)."""
    t = d.steps[i]
    norm = PowerNorm(gamma, vmin=0.0, vmax=float(d.density[i].max()))
    ax.imshow(d.density[i].numpy(), origin="lower", extent=d.extent, cmap="viridis", norm=norm)
    true = d.tokens[t]
    if label_symbols:
        for s, (ex, ey) in zip(d.symbols, d.encodings[i].tolist(), strict=True):
            hit = s == true
            ax.text(ex, ey, s, color="red" if hit else "white", fontsize=8 if hit else 5.5,
                    fontweight="bold" if hit else "normal", ha="center", va="center",
                    alpha=1.0 if hit else 0.75, zorder=3 if hit else 2)  # fmt: skip
    zx, zy = d.z[t].tolist()
    ax.plot([zx], [zy], marker="x", color="red", ms=5, mew=1.2, zorder=4)
    context = "".join(d.tokens[max(0, t - 6) : t])
    ax.set_title(f"t={t + 1}: {context}[{true}]", fontsize=8)
    ax.set_xlim(d.extent[0], d.extent[1])
    ax.set_ylim(d.extent[2], d.extent[3])
    ax.set_xticks([])
    ax.set_yticks([])


def plot_prior_densities(
    model: Any,
    text: str = DEFAULT_TEXT,
    focus: str | None = DEFAULT_FOCUS,
    vocab: Sequence[str] | CharVocab | None = None,
    grid_size: int = 150,
    extent: Sequence[float] | None = None,
    seed: int = 0,
    max_panels: int = 16,
    ncols: int = 4,
    label_symbols: bool = True,
    gamma: float = 0.5,
    title: str | None = None,
    path: PathLike | None = None,
    dpi: int = 110,
) -> Figure:
    """Paper Fig. 6: p(z_t | z_{<t}) for the steps of ``focus`` inside ``text`` (all steps,
    up to ``max_panels``, when ``focus`` is None), z_{1:T} ~ q(z | x) with ``seed``.

    ``model``: a ``SequenceLitModule`` (e.g. ``latentflow.evaluate.load_module(ckpt)``; its
    vocabulary comes from the checkpoint) or a ``LatentFlowModel`` with ``vocab``; H must be 2.
    Each panel marks where the encoder puts every vocabulary symbol at that step (white
    labels; the true symbol in red) and the sampled z_t (red cross). ``extent`` = [x0, x1, y0,
    y1] fixes the grid; by default it covers every mark. Colours are density**``gamma`` per
    panel (0.5 brings out the smaller modes; 1 is linear).
    """
    d = prior_densities(model, text, focus, vocab, grid_size, extent, seed, max_panels)
    n = len(d.steps)
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = new_figure(2.6 * ncols, 2.6 * nrows + 0.4)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for i, ax in enumerate(axes):
        if i < n:
            draw_prior_panel(ax, d, i, gamma, label_symbols)
        else:
            ax.set_axis_off()
    shown = "".join(d.tokens[d.steps[0] : d.steps[-1] + 1])
    fig.suptitle(
        title or f"prior densities $p(z_t | z_{{<t}})$ for '{shown}', $z \\sim q(z|x)$",
        fontsize=10,
    )
    return save_figure(fig, path, dpi)
