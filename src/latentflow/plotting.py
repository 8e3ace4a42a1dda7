"""The paper's figures, made from your own models, checkpoints and runs.

* Fig. 5a/b -- ``plot_nlsq_composition``: hand-set NLSq layers and the density they map a
  standard Gaussian to (one smooth bijection, several modes).
* Fig. 5c -- ``plot_toy_densities``: a 5-layer AF with NLSq vs affine fitted to a mixture of
  four Gaussians (``latentflow.toy``), test NLL of each and the true entropy in the titles.
* Fig. 6 -- ``plot_prior_densities``: for an H = 2 flow model, the conditional prior densities
  p(z_t | z_{<t}) on a grid for each character of a string, z_{<t} drawn from q(z | x), with the
  encoding of every vocabulary symbol marked.
* Fig. 7 -- ``plot_generation_speed``: generation time vs length from the benchmark CSV.
* ``plot_training_curves``: ELBO, reconstruction, KL, KL weight (and validation NLL) from a run
  directory's CSV logs.

Every ``plot_*`` function returns a ``matplotlib.figure.Figure`` drawn on an Agg canvas (no
pyplot, no global backend switch: it works headless, in the CLI and in notebooks) and saves it
when given ``path``.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure
from torch import Tensor, nn

from latentflow.data.vocab import PAD_TOKEN, UNK_TOKEN, WORD_BOUNDARY, CharVocab
from latentflow.flows import Affine, NLSq, standard_normal_log_prob
from latentflow.models.priors import SequencePrior
from latentflow.toy import MEANS, ToyFit, fit_mixture_flow, flow_log_prob, mixture_log_prob

PathLike = str | Path

# Fig. 5a/b: four NLSq layers (raw parameters a, log b, c', log d, g as ``NLSq`` takes them),
# applied in the density direction z -> eps. Each is the identity plus a narrow bump (d = 3,
# c' = 3: the slope dips close to its bound (1 - alpha) b on one side of the bump); the bumps
# sit at z = -1.2, 0, 1.2, 2.4 of their inputs, and each dip becomes a gap between two modes.
NLSQ_LAYERS: tuple[tuple[float, float, float, float, float], ...] = tuple(
    (0.0, 0.0, 3.0, math.log(3.0), -3.0 * m) for m in (-1.2, 0.0, 1.2, 2.4)
)

# Fig. 6: the paper's string "_groups_", inside a validation sentence of PTB (valid line 1084).
DEFAULT_TEXT = (
    "the two groups have been working together since the late 1970s long before soviet joint "
    "ventures were the rage in the west"
)
DEFAULT_FOCUS = "_groups_"


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: PathLike | None, dpi: int = 110) -> Figure:
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi)
    return fig


# ---------------------------------------------------------------------------- Fig. 5a/b
def nlsq_composition(
    layers: Sequence[Sequence[float]] = NLSQ_LAYERS, lim: float = 4.0, num: int = 2001
) -> dict[str, Tensor]:
    """Compose NLSq layers on a grid of z (float64): ``{"z", "eps", "log_pz"}``, each [num].

    The layers act in the density direction, eps = f_L(... f_1(z)), so the density of
    z = f^{-1}(eps), eps ~ N(0, 1), is exact from the closed forms alone:
    :math:`\\log p(z) = \\log N(f(z)) + \\sum_l \\log |f_l'|`.

    >>> out = nlsq_composition(num=4001, lim=6.0)
    >>> mass = out["log_pz"].exp().sum() * (out["z"][1] - out["z"][0])
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
    fig = _figure(8.0, 3.2)
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
    return _save(fig, path, dpi)


# ---------------------------------------------------------------------------- Fig. 5c
def _grid(lim: float, size: int) -> tuple[Tensor, list[float]]:
    axis = torch.linspace(-lim, lim, size)
    gy, gx = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([gx.flatten(), gy.flatten()], -1), [-lim, lim, -lim, lim]  # [S*S, 2]


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
    points, extent = _grid(lim, grid_size)
    with torch.no_grad():
        panels = [("data: mixture of 4 Gaussians", mixture_log_prob(points).exp())]
        for f in fits:
            density = flow_log_prob(f.flow, points).exp()
            title = f"AF-{'NLSq' if f.transform == 'nlsq' else f.transform}: NLL {f.nll:.3f}"
            panels.append((title, density))
    fig = _figure(3.0 * len(panels), 3.3)
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
    return _save(fig, path, dpi)


# ---------------------------------------------------------------------------- Fig. 6
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
    if focus:
        start = _find(tokens, tokenize(focus))
        steps = list(range(start, start + len(tokenize(focus))))
    else:
        steps = list(range(len(tokens)))
    steps = steps[:max_panels]
    was_training = net.training
    net.eval()
    try:
        x = torch.tensor([vocab.encode(tokens)])  # [1, T]
        lengths = torch.tensor([len(tokens)])
        mu, logvar = net.encode(x, lengths)  # [1, T, H]
        gen = torch.Generator().manual_seed(seed)
        noise = torch.randn(mu.shape, generator=gen).to(mu)
        z = mu + torch.exp(0.5 * logvar) * noise  # [1, T, H], z ~ q(z | x)
        ids = [i for i, s in enumerate(vocab.symbols) if s not in (PAD_TOKEN, UNK_TOKEN)]
        enc = torch.stack([symbol_encodings(net, x, t, ids) for t in steps])  # [S, V, H]
        if extent is None:
            pts = torch.cat([enc.reshape(-1, 2), z[0, steps]])  # every mark must be on the grid
            lo, hi = pts.min(0).values, pts.max(0).values
            mid, half = (lo + hi) / 2, 0.6 * float((hi - lo).max().clamp_min(1.0))  # square
            extent = [mid[0] - half, mid[0] + half, mid[1] - half, mid[1] + half]
        extent = [float(v) for v in extent]
        gx = torch.linspace(extent[0], extent[1], grid_size)
        gy = torch.linspace(extent[2], extent[3], grid_size)
        yy, xx = torch.meshgrid(gy, gx, indexing="ij")
        points = torch.stack([xx.flatten(), yy.flatten()], -1).to(mu)  # [G, 2]
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
    fig = _figure(2.6 * ncols, 2.6 * nrows + 0.4)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for i, ax in enumerate(axes):
        if i >= n:
            ax.set_axis_off()
            continue
        t = d.steps[i]
        norm = PowerNorm(gamma, vmin=0.0, vmax=float(d.density[i].max()))
        ax.imshow(d.density[i].numpy(), origin="lower", extent=d.extent, cmap="viridis", norm=norm)
        true = d.tokens[t]
        if label_symbols:
            for s, (ex, ey) in zip(d.symbols, d.encodings[i].tolist(), strict=True):
                hit = s == true
                ax.text(
                    ex,
                    ey,
                    s,
                    color="red" if hit else "white",
                    fontsize=8 if hit else 5.5,
                    fontweight="bold" if hit else "normal",
                    ha="center",
                    va="center",
                    alpha=1.0 if hit else 0.75,
                    zorder=3 if hit else 2,
                )
        zx, zy = d.z[t].tolist()
        ax.plot([zx], [zy], marker="x", color="red", ms=5, mew=1.2, zorder=4)
        context = "".join(d.tokens[max(0, t - 6) : t])
        ax.set_title(f"t={t + 1}: {context}[{true}]", fontsize=8)
        ax.set_xlim(d.extent[0], d.extent[1])
        ax.set_ylim(d.extent[2], d.extent[3])
        ax.set_xticks([])
        ax.set_yticks([])
    shown = "".join(d.tokens[d.steps[0] : d.steps[-1] + 1])
    fig.suptitle(
        title or f"prior densities $p(z_t | z_{{<t}})$ for '{shown}', $z \\sim q(z|x)$",
        fontsize=10,
    )
    return _save(fig, path, dpi)


# ---------------------------------------------------------------------------- Fig. 7
BENCH_COLUMNS = ("model", "length", "batch", "seconds")
# Accepted spellings of each column (the first one present wins); ``kind`` is optional.
BENCH_ALIASES: dict[str, tuple[str, ...]] = {
    "model": ("model",),
    "length": ("length", "T"),
    "batch": ("batch", "batch_size"),
    "seconds": ("seconds", "median_s", "median"),
    "kind": ("kind", "task"),
}
# Optional error-band columns (low, high); the first pair present wins.
_BAND_COLUMNS = (("ci_low", "ci_high"), ("seconds_low", "seconds_high"), ("min_s", "max_s"))
MODEL_LABELS = {"iaf_scf": "IAF/SCF", "af_scf": "AF/SCF", "af_af": "AF/AF", "lstm": "LSTM"}


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def read_benchmark_csv(path: PathLike) -> list[dict[str, Any]]:
    """Rows of ``benchmarks/bench_sample.py``'s CSV, normalised to ``model``, ``length``,
    ``batch``, ``seconds`` (required; ``task``/``batch_size``/``median_s`` are accepted
    spellings) and ``kind`` (text | music; optional). Error-band columns (``min_s``/``max_s``,
    ``ci_low``/``ci_high``) become ``low``/``high``; other columns are kept as they are. Rows
    without a finite time are skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no benchmark CSV at {path}")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        fields = list(reader.fieldnames or [])
        column = {
            key: next((name for name in names if name in fields), None)
            for key, names in BENCH_ALIASES.items()
        }
        missing = [k for k in BENCH_COLUMNS if column[k] is None]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; have {fields}")
        band = next(((lo, hi) for lo, hi in _BAND_COLUMNS if lo in fields and hi in fields), None)
        rows = []
        for row in reader:
            seconds, length, batch = (
                _float(row[column[k]]) for k in ("seconds", "length", "batch")
            )
            if not all(math.isfinite(v) for v in (seconds, length, batch)):
                continue
            row.update(
                model=row[column["model"]],
                kind=row[column["kind"]] if column["kind"] else "",
                seconds=seconds,
                length=int(length),
                batch=int(batch),
            )
            if band is not None:
                row.update(low=_float(row[band[0]]), high=_float(row[band[1]]))
            rows.append(row)
    return rows


def plot_generation_speed(
    rows: Iterable[dict[str, Any]] | PathLike,
    batch: int | None = None,
    all_batches: bool = False,
    logy: bool = False,
    path: PathLike | None = None,
    dpi: int = 110,
) -> Figure:
    """Paper Fig. 7: seconds per generation vs sequence length, one line per model, one panel
    per ``kind`` (text, music). ``batch`` picks the batch size (default: the smallest in the
    file; the paper's is 1); ``all_batches`` draws every batch size instead."""
    rows = read_benchmark_csv(rows) if isinstance(rows, str | Path) else list(rows)
    if not rows:
        raise ValueError("no benchmark rows to plot")
    if not all_batches:
        batch = min(int(r["batch"]) for r in rows) if batch is None else batch
        rows = [r for r in rows if int(r["batch"]) == batch]
        if not rows:
            raise ValueError(f"no benchmark rows for batch {batch}")
    kinds = sorted({r.get("kind") or "" for r in rows}, key=lambda k: (k != "text", k))
    batches = sorted({int(r["batch"]) for r in rows})
    fig = _figure(4.2 * len(kinds), 3.4)
    for ax, kind in zip(np.atleast_1d(fig.subplots(1, len(kinds))), kinds, strict=True):
        series: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for r in rows:
            if (r.get("kind") or "") == kind:
                series.setdefault((str(r["model"]), int(r["batch"])), []).append(r)
        for (model, b), points in sorted(series.items()):
            points.sort(key=lambda r: r["length"])
            x = [r["length"] for r in points]
            y = [r["seconds"] for r in points]
            name = MODEL_LABELS.get(model, model)
            label = name if len(batches) == 1 else f"{name} (B={b})"
            (line,) = ax.plot(x, y, marker="o", ms=3, label=label)
            if all("low" in r and "high" in r for r in points):
                lo, hi = [r["low"] for r in points], [r["high"] for r in points]
                ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, lw=0)
        ax.set(xlabel="sequence length T", ylabel="seconds per generation")
        if logy:
            ax.set_yscale("log")
        name = {"text": "characters (PTB)", "music": "music"}.get(kind, kind)
        suffix = f", batch {batches[0]}" if len(batches) == 1 else ""
        ax.set_title(f"generation time{': ' + name if name else ''}{suffix}", fontsize=10)
        ax.legend(frameon=False, fontsize=8)
    return _save(fig, path, dpi)


# ---------------------------------------------------------------------------- training curves
def metrics_files(run: PathLike) -> list[Path]:
    """The CSVLogger files of a run: ``<run>/csv/version_*/metrics.csv`` (a resumed run adds a
    version), or ``run`` itself when it is a metrics CSV."""
    run = Path(run)
    if run.is_file():
        return [run]
    files = sorted(
        run.glob("csv/version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[-1])
    )
    files = files or sorted(run.glob("version_*/metrics.csv"))
    if not files:
        raise FileNotFoundError(
            f"no csv/version_*/metrics.csv under {run} (train with logger=csv, the default)"
        )
    return files


def read_metrics(run: PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every logged metric of a run as ``{name: (steps, values)}``, sorted by step."""
    series: dict[str, list[tuple[float, float]]] = {}
    for file in metrics_files(run):
        with file.open(newline="") as fh:
            for row in csv.DictReader(fh):
                step = _float(row.get("step"))
                if not math.isfinite(step):
                    continue
                for key, value in row.items():
                    if key in ("step", "epoch") or value in (None, ""):
                        continue
                    v = _float(value)
                    if math.isfinite(v):
                        series.setdefault(key, []).append((step, v))
    out = {}
    for key, pairs in series.items():
        pairs.sort(key=lambda p: p[0])
        arr = np.asarray(pairs, dtype=np.float64)
        out[key] = (arr[:, 0], arr[:, 1])
    return out


def _smooth(values: np.ndarray, weight: float = 0.8) -> np.ndarray:
    out, acc = np.empty_like(values), values[0]
    for i, v in enumerate(values):
        acc = weight * acc + (1 - weight) * v
        out[i] = acc
    return out


CURVE_PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("-ELBO (nats / token)", ("train/elbo", "train/loss")),
    ("reconstruction -log p(x|z) (nats / token)", ("train/recon", "val/recon")),
    ("KL (nats / token)", ("train/kl", "val/kl")),
    ("KL weight", ("train/kl_weight",)),
    ("validation NLL (bpc | nats per step)", ("val/nll",)),
)


def plot_training_curves(
    run: PathLike | dict[str, tuple[np.ndarray, np.ndarray]],
    smooth: float = 0.6,
    path: PathLike | None = None,
    dpi: int = 110,
) -> Figure:
    """ELBO, reconstruction, KL and KL weight against optimizer steps (train: raw, faint, and
    smoothed with an exponential moving average of weight ``smooth``; validation: markers),
    plus the validation NLL, from a run directory (or what ``read_metrics`` returned)."""
    metrics = run if isinstance(run, dict) else read_metrics(run)
    if not any(k in metrics for _, keys in CURVE_PANELS for k in keys):
        raise ValueError(f"no training metrics found (have: {sorted(metrics)})")
    fig = _figure(11.0, 6.0)
    axes = fig.subplots(2, 3).ravel()
    for ax, (title, keys) in zip(axes, CURVE_PANELS, strict=False):
        drawn = False
        for key in keys:
            if key not in metrics:
                continue
            steps, values = metrics[key]
            if key.startswith("train/") and len(values) > 2 and key != "train/kl_weight":
                (line,) = ax.plot(steps, values, alpha=0.25, lw=0.8)
                ax.plot(steps, _smooth(values, smooth), color=line.get_color(), label=key)
            else:
                ax.plot(steps, values, marker="o" if key.startswith("val/") else None, label=key)
            drawn = True
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        if drawn:
            ax.legend(frameon=False, fontsize=7)
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
    for ax in axes[len(CURVE_PANELS) :]:
        ax.set_axis_off()
    if not isinstance(run, dict):
        fig.suptitle(str(run), fontsize=8)
    return _save(fig, path, dpi)
