"""Hidden flows: layered flows over one step's vector z_t in R^H, conditioned on a context c_t
(paper Sec. 4.3, "flow in hidden"). Each is a ``FlowStack`` of ``num_layers`` layers, one scalar
transform per layer from the ``transform`` factory (``latentflow.protocols.HiddenFlow``).

>>> import torch
>>> from latentflow.flows import NLSq, standard_normal_log_prob
>>> flow = AutoregressiveFlow(4, 3, transform=NLSq, num_layers=2, hidden_features=16,
...                           num_hidden_layers=2)
>>> z, ctx = torch.randn(8, 4), torch.randn(8, 3)
>>> eps, logabsdet = flow(z, ctx)
>>> log_pz = standard_normal_log_prob(eps) + logabsdet
>>> z_back, _ = flow.sample(eps, ctx)
>>> bool(torch.allclose(z, z_back, atol=1e-4))
True
"""

from __future__ import annotations

from collections.abc import Callable

from latentflow.flows.layers import AutoregressiveLayer, CouplingLayer, ElementwiseLayer, FlowStack
from latentflow.flows.transforms import ScalarTransform

TransformFactory = Callable[[], ScalarTransform]


def _check(features: int, num_layers: int, minimum_features: int = 1) -> None:
    if features < minimum_features:
        raise ValueError(
            f"features (the latent size) must be >= {minimum_features}, got {features}"
        )
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")


class AutoregressiveFlow(FlowStack):
    """AF in hidden: MADE layers (``hidden_features`` x ``num_hidden_layers``), the dimension
    order reversed between layers."""

    def __init__(
        self,
        features: int,
        context_features: int = 0,
        *,
        transform: TransformFactory,
        num_layers: int,
        hidden_features: int,
        num_hidden_layers: int,
    ) -> None:
        _check(features, num_layers)
        super().__init__(
            [
                AutoregressiveLayer(
                    features,
                    transform(),
                    context_features,
                    hidden_features,
                    num_hidden_layers,
                    reverse=i % 2 == 1,
                )
                for i in range(num_layers)
            ]
        )


class CouplingFlow(FlowStack):
    """SCF in hidden: split coupling layers whose MLP (``hidden_features`` x
    ``num_hidden_layers``) sees the pass-through half and the context; halves swap between
    layers. Needs ``features >= 2``."""

    def __init__(
        self,
        features: int,
        context_features: int = 0,
        *,
        transform: TransformFactory,
        num_layers: int,
        hidden_features: int,
        num_hidden_layers: int,
    ) -> None:
        _check(features, num_layers, minimum_features=2)
        super().__init__(
            [
                CouplingLayer(
                    features,
                    transform(),
                    context_features,
                    hidden_features,
                    num_hidden_layers,
                    swap=i % 2 == 1,
                )
                for i in range(num_layers)
            ]
        )


class ElementwiseFlow(FlowStack):
    """Independent scalar transforms per dimension, parameters from the context alone through
    an MLP of ``num_hidden_layers`` x ``hidden_features`` (0 hidden layers: one Linear, the
    reference's; ``hidden_features`` then unused): the paper's "-AF hidden" ablation."""

    def __init__(
        self,
        features: int,
        context_features: int = 0,
        *,
        transform: TransformFactory,
        num_layers: int,
        hidden_features: int,
        num_hidden_layers: int,
    ) -> None:
        _check(features, num_layers)
        if num_hidden_layers < 0 or (num_hidden_layers and hidden_features < 1):
            raise ValueError(
                "num_hidden_layers must be >= 0 and hidden_features >= 1 when it is > 0, got "
                f"{num_hidden_layers}, {hidden_features}"
            )
        super().__init__(
            [
                ElementwiseLayer(
                    features, transform(), context_features, hidden_features, num_hidden_layers
                )
                for _ in range(num_layers)
            ]
        )
