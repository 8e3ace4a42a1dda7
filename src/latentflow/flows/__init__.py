"""Normalizing-flow building blocks in plain PyTorch (no Lightning, no Hydra).

Every layer and stack: ``forward(x, context) -> (u, logabsdet)`` maps data to noise (density
direction) and ``inverse(u, context) -> (x, logabsdet)`` maps noise to data (sampling).

>>> import torch
>>> flow = hidden_flow("af", features=4, context_features=3, transform="nlsq", num_layers=2)
>>> z, ctx = torch.randn(8, 4), torch.randn(8, 3)
>>> eps, logabsdet = flow(z, ctx)
>>> log_pz = standard_normal_log_prob(eps) + logabsdet
>>> z_back, _ = flow.inverse(eps, ctx)
>>> bool(torch.allclose(z, z_back, atol=1e-4))
True
"""

from __future__ import annotations

from latentflow.flows.layers import (
    AutoregressiveLayer,
    CouplingLayer,
    ElementwiseLayer,
    FlowLayer,
    FlowStack,
    standard_normal_log_prob,
)
from latentflow.flows.made import MADE, MaskedLinear
from latentflow.flows.transforms import (
    TRANSFORMS,
    Affine,
    NLSq,
    ScalarTransform,
    make_transform,
)

HIDDEN_FLOWS = ("af", "scf", "elementwise")


def hidden_flow(
    kind: str,
    features: int,
    context_features: int = 0,
    transform: str = "nlsq",
    num_layers: int = 5,
    hidden_features: int = 100,
    num_hidden_layers: int = 2,
) -> FlowStack:
    """A layered flow over a vector of size ``features``, conditioned on a context.

    ``kind``: ``"af"`` (MADE layers, order reversed between layers), ``"scf"`` (coupling layers,
    halves swapped between layers) or ``"elementwise"`` (independent per-dimension transforms
    from the context: the "-AF hidden" ablation).
    """
    if kind not in HIDDEN_FLOWS:
        raise ValueError(f"prior.hidden_flow must be one of {list(HIDDEN_FLOWS)}, got {kind!r}")
    if num_layers < 1:
        raise ValueError(f"prior.num_flow_layers must be >= 1, got {num_layers}")
    if features < 1:
        raise ValueError(f"model.latent_dim must be >= 1, got {features}")
    if kind == "scf" and features < 2:
        raise ValueError(
            f"model.latent_dim must be >= 2 for a coupling (scf) flow, got {features}"
        )
    layers: list[FlowLayer] = []
    for i in range(num_layers):
        t = make_transform(transform)
        if kind == "af":
            layers.append(
                AutoregressiveLayer(
                    features, t, context_features, hidden_features, num_hidden_layers, i % 2 == 1
                )
            )
        elif kind == "scf":
            layers.append(
                CouplingLayer(
                    features, t, context_features, hidden_features, num_hidden_layers, i % 2 == 1
                )
            )
        else:
            layers.append(ElementwiseLayer(features, t, context_features))
    return FlowStack(layers)


__all__ = [
    "HIDDEN_FLOWS",
    "MADE",
    "TRANSFORMS",
    "Affine",
    "AutoregressiveLayer",
    "CouplingLayer",
    "ElementwiseLayer",
    "FlowLayer",
    "FlowStack",
    "MaskedLinear",
    "NLSq",
    "ScalarTransform",
    "hidden_flow",
    "make_transform",
    "standard_normal_log_prob",
]
