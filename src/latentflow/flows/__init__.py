"""Normalizing-flow building blocks in plain PyTorch (no Lightning, no Hydra).

Every layer and stack: ``forward(x, context) -> (u, logabsdet)`` maps data to noise (density
direction), ``inverse(u, context) -> (x, logabsdet)`` maps noise to data (differentiable) and
``sample(u, context)`` does the same without autograd (the sampling path). Scalar transforms are
stateless: ``forward(x, params)``, ``inverse(y, params)``, ``solve(y, params)``. Contracts:
``latentflow.protocols``.

* ``transforms``: scalar transforms (affine, NLSq, with closed-form inverse where one exists);
  ``spline``: the rational-quadratic spline; ``mixture``: the mixture-of-logistics CDF
  (Flow++, TarFlowLM).
* ``made``: the masked autoencoder of the AF layers.
* ``layers``: autoregressive, coupling and elementwise layers and ``FlowStack``.
* ``hidden``: the hidden flows of a time step (AF, SCF, none), built from the layers.

>>> import torch
>>> flow = AutoregressiveFlow(4, 3, transform=NLSq, num_layers=2, hidden_features=16,
...                           num_hidden_layers=2)
>>> z, ctx = torch.randn(8, 4), torch.randn(8, 3)
>>> eps, logabsdet = flow(z, ctx)
>>> z_back, _ = flow.sample(eps, ctx)
>>> bool(torch.allclose(z, z_back, atol=1e-4))
True
"""

from __future__ import annotations

from latentflow.flows.hidden import AutoregressiveFlow, CouplingFlow, ElementwiseFlow
from latentflow.flows.layers import (
    AutoregressiveLayer,
    CouplingLayer,
    ElementwiseLayer,
    FlowLayer,
    FlowStack,
    standard_normal_log_prob,
)
from latentflow.flows.made import MADE, MaskedLinear
from latentflow.flows.mixture import MixtureLogisticCDF
from latentflow.flows.spline import RationalQuadraticSpline
from latentflow.flows.transforms import Affine, NLSq, ScalarTransform

__all__ = [
    "MADE",
    "Affine",
    "AutoregressiveFlow",
    "AutoregressiveLayer",
    "CouplingFlow",
    "CouplingLayer",
    "ElementwiseFlow",
    "ElementwiseLayer",
    "FlowLayer",
    "FlowStack",
    "MaskedLinear",
    "MixtureLogisticCDF",
    "NLSq",
    "RationalQuadraticSpline",
    "ScalarTransform",
    "standard_normal_log_prob",
]
