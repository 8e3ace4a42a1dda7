"""Build a model from plain, JSON-able settings (what a checkpoint stores as hyperparameters)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from latentflow.data.lengths import LengthDistribution
from latentflow.flows import FlowStack
from latentflow.models.baseline import LSTMLanguageModel
from latentflow.models.priors import build_prior
from latentflow.models.vae import LatentFlowModel

MODEL_KINDS = ("flow", "lstm")


def build_model(
    model: dict[str, Any],
    prior: dict[str, Any] | None,
    transform: str,
    data: dict[str, Any],
) -> nn.Module:
    """``model``: kind (flow | lstm), embed_dim, hidden_dim, num_layers, latent_dim, pos_dim,
    tie_weights, dropout; ``prior``: time_flow, hidden_flow, num_flow_layers, flow_hidden,
    dropout and optionally transform (pins the scalar transform, winning over ``transform``;
    flow only); ``data``: kind (text | music), num_features, max_length."""
    kind = model.get("kind", "flow")
    if kind not in MODEL_KINDS:
        raise ValueError(f"model.kind must be one of {list(MODEL_KINDS)}, got {kind!r}")
    text = data["kind"] == "text"
    max_length = int(data["max_length"])
    length_distribution = LengthDistribution(torch.zeros(max_length + 1), smoothing=0.0)
    common = dict(
        num_features=int(data["num_features"]),
        max_length=max_length,
        text=text,
        embed_dim=model.get("embed_dim", 500),
        hidden_dim=model.get("hidden_dim", 500),
        num_layers=model.get("num_layers", 2),
        pos_dim=model.get("pos_dim", 32),
        tie_weights=model.get("tie_weights", True),
        length_distribution=length_distribution,
    )
    if kind == "lstm":
        return LSTMLanguageModel(**common, dropout=model.get("dropout", 0.1))
    prior = dict(prior or {})
    p = build_prior(
        time_flow=prior.get("time_flow", "af"),
        hidden_flow=prior.get("hidden_flow", "af"),
        transform=prior.get("transform") or transform,
        latent_dim=model.get("latent_dim", 50),
        max_length=max_length,
        num_flow_layers=prior.get("num_flow_layers", 5),
        flow_hidden=prior.get("flow_hidden", 100),
        pos_dim=model.get("pos_dim", 32),
        lstm_hidden=prior.get("lstm_hidden", model.get("hidden_dim", 500)),
        lstm_layers=prior.get("lstm_layers", model.get("num_layers", 2)),
        dropout=prior.get("dropout", 0.2),
    )
    return LatentFlowModel(p, **common)


def compile_flows(
    model: nn.Module, backend: str = "inductor", mode: str | None = None
) -> list[str]:
    """``torch.compile`` every outermost flow stack of ``model`` in place; returns their names.

    ``nn.Module.compile`` wraps the module's call, so parameter names, checkpoints and
    ``inverse`` (sampling) are unchanged; the density passes of training and evaluation run
    compiled. The LSTMs are left alone: Dynamo does not compile ``nn.LSTM`` (it falls back to
    eager), so compiling the whole model would only add start-up time.
    """
    names = []
    for name, module in model.named_modules():
        if isinstance(module, FlowStack) and not any(name.startswith(n + ".") for n in names):
            module.compile(backend=backend, mode=mode)
            names.append(name)
    return names
