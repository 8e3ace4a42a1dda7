"""``latentflow-plot``: write the paper's figures for your runs (see ``latentflow.plotting``).

    latentflow-plot run outputs/train/<run>               # curves.png (+ prior.png if H = 2)
    latentflow-plot curves outputs/train/<run> -o curves.png
    latentflow-plot compare outputs/train/<run> outputs/train/<other> -o val.png
    latentflow-plot prior outputs/train/<run> --focus _groups_ -o fig6.png
    latentflow-plot speed benchmarks/results/sample_speed.csv -o fig7.png
    latentflow-plot nlsq -o fig5ab.png
    latentflow-plot toy --steps 800 -o fig5c.png

A run directory is what ``latentflow-train`` writes; ``prior`` also takes a checkpoint file.
Figures go to ``<run>/figures/`` unless ``-o/--out`` (one figure) or ``--out-dir`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from latentflow.config_checks import ConfigError

FIGURES_DIR = "figures"


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint file as given, or a run directory's best checkpoint (``metrics.json``'s
    ``best_checkpoint``, else ``checkpoints/best-*.ckpt``), else its ``last.ckpt``."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise ConfigError(f"no run directory or checkpoint at {path}")
    metrics = path / "metrics.json"
    if metrics.is_file():
        best = json.loads(metrics.read_text()).get("best_checkpoint")
        if best and Path(best).is_file():
            return Path(best)
    candidates = sorted((path / "checkpoints").glob("best-*.ckpt"))
    candidates += [path / "checkpoints" / "last.ckpt"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ConfigError(f"no checkpoint under {path / 'checkpoints'}")


def _out(args: argparse.Namespace, default_dir: Path, name: str) -> Path:
    if args.out:
        return Path(args.out)
    return Path(args.out_dir or default_dir) / name


def _prior(args: argparse.Namespace, out: Path) -> Path:
    from latentflow import plotting
    from latentflow.run import load_module

    module = load_module(find_checkpoint(args.run), trust_components=args.trust_components)
    plotting.plot_prior_densities(
        module,
        text=args.text,
        focus=args.focus or None,
        grid_size=args.grid_size,
        extent=args.extent,
        seed=args.seed,
        path=out,
        dpi=args.dpi,
    )
    return out


def _run_dir(run: str) -> Path:
    path = Path(run)
    return path.parent.parent if path.is_file() and path.parent.name == "checkpoints" else path


def cmd_run(args: argparse.Namespace) -> list[Path]:
    """Every figure a run directory supports."""
    from latentflow import plotting
    from latentflow.run import load_module

    run = Path(args.run)
    out_dir = Path(args.out_dir or run / FIGURES_DIR)
    written = []
    try:
        plotting.plot_training_curves(run, path=out_dir / "curves.png", dpi=args.dpi)
        written.append(out_dir / "curves.png")
    except FileNotFoundError as err:
        print(f"latentflow-plot: skipping training curves ({err})", file=sys.stderr)
    module = load_module(find_checkpoint(run), trust_components=args.trust_components)
    net = module.net
    latent = getattr(getattr(net, "prior", None), "latent_dim", None)
    if latent == 2 and getattr(net, "text", False):
        written.append(_prior(args, out_dir / "prior.png"))
    else:
        print(
            "latentflow-plot: skipping prior densities (need a text flow model with "
            f"prior.latent_dim=2; this one has {latent})",
            file=sys.stderr,
        )
    if args.bench:
        written.append(out_dir / "speed.png")
        plotting.plot_generation_speed(args.bench, path=written[-1], dpi=args.dpi)
    return written


def build_parser() -> argparse.ArgumentParser:
    from latentflow.plotting import DEFAULT_FOCUS, DEFAULT_TEXT

    parser = argparse.ArgumentParser(
        prog="latentflow-plot", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def add(
        name: str, help: str, run: bool = True, single: bool = True
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        if run:
            p.add_argument("run", help="run directory (or checkpoint file for `prior`)")
        if single:
            p.add_argument("-o", "--out", help="output image (.png, .pdf, .svg)")
        p.add_argument("--out-dir", help="directory for the figures (default: <run>/figures)")
        p.add_argument("--dpi", type=int, default=110, help="resolution of raster images")
        p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
        return p

    def prior_args(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--trust-components",
            action="append",
            default=[],
            metavar="MODULE",
            help="a module prefix of a checkpoint's own parts you trust (e.g. my_pkg; repeat)",
        )
        p.add_argument("--text", default=DEFAULT_TEXT, help="the string (spaces or _)")
        p.add_argument(
            "--focus", default=DEFAULT_FOCUS, help="the substring to plot ('' = whole text)"
        )
        p.add_argument("--grid-size", type=int, default=150, help="grid points per axis")
        p.add_argument(
            "--extent", type=float, nargs=4, metavar=("X0", "X1", "Y0", "Y1"), help="grid box"
        )
        p.add_argument("--seed", type=int, default=0, help="seed of z ~ q(z|x)")

    p = add("run", "all figures a run directory supports", single=False)
    prior_args(p)
    p.add_argument("--bench", help="also plot this benchmark CSV (Fig. 7)")
    add("curves", "training curves (ELBO, reconstruction, KL, KL weight, val NLL)")
    p = add("compare", "validation NLL at full KL weight of several runs", run=False)
    p.add_argument("runs", nargs="+", help="run directories (a line each)")
    prior_args(add("prior", "Fig. 6: prior densities p(z_t | z_<t) of an H=2 text model"))
    p = add("speed", "Fig. 7: generation time vs length from a benchmark CSV", run=False)
    p.add_argument(
        "csv",
        help="benchmarks.bench_sample's CSV: model, length, batch_size, median_s "
        "(task, min_s, max_s optional)",
    )
    p.add_argument("--batch", type=int, help="batch size to plot (default: the smallest)")
    p.add_argument("--all-batches", action="store_true", help="one line per batch size")
    p.add_argument("--logy", action="store_true", help="logarithmic time axis")
    add("nlsq", "Fig. 5a/b: hand-set NLSq layers and the density they make", run=False)
    p = add("toy", "Fig. 5c: AF-NLSq vs AF-affine on a mixture of four Gaussians", run=False)
    p.add_argument("--steps", type=int, default=800, help="training steps per flow")
    p.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    import torch

    from latentflow import plotting

    torch.set_num_threads(max(1, args.threads))
    try:
        if args.command == "run":
            written = cmd_run(args)
        elif args.command == "curves":
            out = _out(args, _run_dir(args.run) / FIGURES_DIR, "curves.png")
            written = [out]
            plotting.plot_training_curves(args.run, path=out, dpi=args.dpi)
        elif args.command == "compare":
            written = [_out(args, Path("."), "compare.png")]
            plotting.plot_validation_comparison(args.runs, path=written[0], dpi=args.dpi)
        elif args.command == "prior":
            written = [_prior(args, _out(args, _run_dir(args.run) / FIGURES_DIR, "prior.png"))]
        elif args.command == "speed":
            out = _out(args, Path("."), "speed.png")
            written = [out]
            plotting.plot_generation_speed(
                args.csv,
                batch=args.batch,
                all_batches=args.all_batches,
                logy=args.logy,
                path=out,
                dpi=args.dpi,
            )
        elif args.command == "nlsq":
            written = [_out(args, Path("."), "nlsq.png")]
            plotting.plot_nlsq_composition(path=written[0], dpi=args.dpi)
        else:  # toy
            written = [_out(args, Path("."), "toy.png")]
            plotting.plot_toy_densities(
                steps=args.steps, seed=args.seed, path=written[0], dpi=args.dpi
            )
    except (ConfigError, ValueError, FileNotFoundError) as err:
        print(f"latentflow-plot: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    for path in written:
        print(path)


if __name__ == "__main__":
    main()
