"""Build a sequence model from its component nodes (what a checkpoint stores): no Hydra, no YAML.

``components`` holds plain ``_target_`` nodes (``latentflow.components``): ``model`` and, for a
latent model, ``prior``. The model node is called with the data's sizes, its length distribution
p(T) and the prior factory (``latentflow.protocols``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from latentflow.components import ComponentError, instantiate


def build_net(
    components: Mapping[str, Any], data: Mapping[str, Any], length_distribution: Any = None
) -> nn.Module:
    """``components``: ``{"model": node, "prior": node | None}``; ``data``: ``kind`` (text |
    music), ``num_features`` and ``max_length``; ``length_distribution``: p(T), or None for
    an empty one that a checkpoint's state dict fills."""
    if components.get("model") is None:
        raise ComponentError("model: no model node (_target_) given")
    model = instantiate(components["model"], "model", partial=True)
    wiring: dict[str, Any] = {
        "num_features": int(data["num_features"]),
        "max_length": int(data["max_length"]),
        "text": data["kind"] == "text",
        "length_distribution": length_distribution,
    }
    if components.get("prior") is not None:
        wiring["prior"] = instantiate(components["prior"], "prior", partial=True)
    return model(**wiring)


def has_prior(net: nn.Module) -> bool:
    """A latent model (the flow VAE) rather than an exact-likelihood one (the LSTM)."""
    return isinstance(getattr(net, "prior", None), nn.Module)
