"""A user's own parts, outside the package (tests/test_extending.py selects them from the
command line): a scalar transform and a hidden flow, written against latentflow.protocols."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from latentflow.flows import AutoregressiveLayer, CouplingLayer, FlowStack


class SinhArcsinh(nn.Module):
    """y = a + e^s sinh(e^t asinh(x) + c): monotone, heavy- or light-tailed, closed-form both
    ways. Parameters (a, s, c, t) come from the flow's network."""

    num_params = 4

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        a, s, c, t = params.unbind(-1)
        inner = t.exp() * torch.asinh(x) + c
        y = a + s.exp() * torch.sinh(inner)
        log_dy = s + torch.log(torch.cosh(inner)) + t - 0.5 * torch.log1p(x * x)
        return y, log_dy

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        a, s, c, t = params.unbind(-1)
        x = torch.sinh((torch.asinh((y - a) * (-s).exp()) - c) * (-t).exp())
        return x, -self.forward(x, params)[1]

    @torch.no_grad()
    def solve(self, y: Tensor, params: Tensor) -> Tensor:
        return self.inverse(y, params)[0]


class AlternatingFlow(FlowStack):
    """AF and coupling layers in turn (``num_layers`` pairs of nets ``hidden_features`` wide):
    a hidden flow the package does not ship. Its sizes take the conventional names, so the
    ``scale``/``debug`` presets resize it like the package's flows."""

    def __init__(self, features, context_features=0, *, transform, num_layers, hidden_features):
        layers, width = [], hidden_features
        for i in range(num_layers):
            layers.append(AutoregressiveLayer(features, transform(), context_features, width, 1))
            layers.append(CouplingLayer(features, transform(), context_features, width, 1, i % 2))
        super().__init__(layers)
