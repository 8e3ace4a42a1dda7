"""Shared helpers for tests that compose the real Hydra configs."""

from __future__ import annotations

import functools
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from latentflow import recipes
from latentflow.components import instantiate
from latentflow.configs import compose
from latentflow.models.build import build_net
from latentflow.run import components_of


def run_module(
    module: str, *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """``python -m <module> <args>`` in a fresh process at one thread, its output captured;
    ``env`` adds to (or overrides) this process's environment."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        timeout=timeout,
    )


def load_benchmark(name: str):
    """The module ``benchmarks.<name>`` (the repository's benchmarks package)."""
    return importlib.import_module(f"benchmarks.{name}")


def run_benchmark(module, args: list[str], monkeypatch) -> None:
    """Run a loaded benchmark's ``main()`` with command-line ``args``; the benchmark sets the
    thread count, so the tests' single thread (conftest) is put back after it."""
    monkeypatch.setattr(sys, "argv", [f"{module.__name__}.py", *args])
    try:
        module.main()
    finally:
        torch.set_num_threads(1)


TINY = ["debug=tiny", "runtime.threads=1", "trainer.enable_progress_bar=false"]


def compose_config(name: str, overrides: list[str], out_dir: Path | None = None) -> DictConfig:
    """Compose ``conf/<name>.yaml`` like the CLI would, with the run directory at ``out_dir``
    (``latentflow.configs.compose``; default: a path under ``outputs/`` that is not created)."""
    return compose(overrides, config_name=name, output_dir=out_dir)


# Every prior of Tables 1-2 and every variant beyond the paper (latentflow.recipes), by name:
# name -> (prior, overrides).
PRIORS = recipes.priors()
VARIANTS = {
    **{name: (name, ()) for name in PRIORS},
    **{v.name: (v.prior, v.parts) for v in recipes.VARIANTS},
}


@functools.cache
def _recipe_components(overrides: tuple[str, ...]) -> str:
    cfg = compose_config("train", list(overrides))
    return json.dumps(components_of(cfg))


def recipe_components(
    prior: str | None = "af_af",
    *overrides: str,
    latent_dim: int = 3,
    pos_dim: int = 3,
    flow_layers: int = 2,
    flow_hidden: int = 8,
    conditioner_hidden: int = 6,
    conditioner_layers: int = 2,
    dropout: float = 0.0,
    model: str = "flow",
    width: int = 8,
) -> dict[str, Any]:
    """The component nodes of a real recipe (``prior=<name>``, or the LSTM with None), shrunk
    to test sizes: the parts the configs build, not stand-ins."""
    base = [f"model={'lstm' if prior is None else model}"]
    if prior is not None:
        base.append(f"prior={prior}")
    base += [
        f"model.embed_dim={width}",
        f"model.hidden_dim={width}",
        "model.num_layers=1",
        "model.pos_dim=2",
        *overrides,
    ]
    comps = json.loads(_recipe_components(tuple(base)))
    p = comps["prior"]
    if p is not None:
        p.update(latent_dim=latent_dim, pos_dim=pos_dim)
        p["flow"].update(num_layers=flow_layers, hidden_features=flow_hidden)
        if "num_blocks" in p:  # stacked blocks in time (TarFlowLM): two, one each way
            p["num_blocks"] = 2
        if "conditioner" in p:
            if p["conditioner"]["_target_"].endswith("AttentionConditioner"):
                sizes = {"width": conditioner_hidden, "num_heads": 2, "mlp_ratio": 2}
            else:
                sizes = {"hidden_size": conditioner_hidden}
            p["conditioner"].update(sizes, num_layers=conditioner_layers, dropout=dropout)
    elif "dropout" in comps["model"]:
        comps["model"]["dropout"] = dropout
    return comps


def make_prior(
    name: str, max_length: int, seed: int = 0, overrides: tuple[str, ...] = (), **sizes: Any
) -> torch.nn.Module:
    """A recipe's prior at test sizes (``recipe_components``), seeded; ``overrides`` swap
    parts (``transform=spline``, ``conditioner=attention``)."""
    torch.manual_seed(seed)
    node = recipe_components(name, *overrides, **sizes)["prior"]
    return instantiate(node, "prior", partial=True)(max_length=max_length)


def perturb(module: torch.nn.Module, scale: float = 1.0) -> None:
    """Random, non-trivial parameters (the default init is a near-identity flow): weights
    N(0, scale^2 / fan_in), biases and free parameters N(0, (scale / 4)^2)."""
    with torch.no_grad():
        for p in module.parameters():
            std = scale / p.shape[-1] ** 0.5 if p.dim() == 2 else scale / 4
            p.copy_(std * torch.randn_like(p))


def perturbed_prior(
    name: str, max_length: int, latent_dim: int, seed: int = 0, scale: float = 0.7
) -> torch.nn.Module:
    """The prior of ``VARIANTS[name]`` in float64 with non-trivial parameters, eval mode."""
    recipe, overrides = VARIANTS[name]
    prior = make_prior(recipe, max_length, seed, overrides, latent_dim=latent_dim).double()
    perturb(prior, scale)
    return prior.eval()


def make_net(
    prior: str | None,
    text: bool = True,
    num_features: int | None = None,
    max_length: int = 12,
    seed: int = 0,
    lengths: list[int] | None = None,
    **sizes: Any,
) -> torch.nn.Module:
    """A recipe's model (flow with ``prior``, or the LSTM for None) at test sizes, with a p(T)."""
    from latentflow.data.lengths import LengthDistribution

    torch.manual_seed(seed)
    data = {"kind": "text" if text else "music", "max_length": max_length}
    data["num_features"] = num_features or (7 if text else 88)
    p = LengthDistribution.from_lengths(lengths or [2, 3, 3, 5, 8], max_length, smoothing=0.0)
    return build_net(recipe_components(prior, **sizes), data, p)
