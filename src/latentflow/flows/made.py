"""MADE: a masked feed-forward network with autoregressive outputs (Germain et al., 2015).

Output ``i`` (all ``P`` parameters of dimension ``i``) depends only on the inputs that come before
``i`` in ``order``; the context vector enters the first layer unmasked.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class MaskedLinear(nn.Linear):
    """``nn.Linear`` whose weight is multiplied by a fixed 0/1 mask (a buffer)."""

    def __init__(self, mask: Tensor) -> None:  # mask: [out, in]
        super().__init__(mask.shape[1], mask.shape[0])
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    r"""Autoregressive parameter network ``params_i = net(x_{order < order_i}, context)``.

    Args:
        features: H, the vector size.
        num_params: P, parameters per dimension (the scalar transform's ``num_params``).
        context_features: size of the unmasked context (0 for none).
        hidden_features: width of each hidden layer.
        num_hidden_layers: number of hidden layers (>= 1).
        order: a permutation of ``range(H)``: ``order[k]`` is the dimension generated k-th.

    ``forward(x [..., H], context [..., C]) -> params [..., H, P]``.
    """

    def __init__(
        self,
        features: int,
        num_params: int,
        context_features: int = 0,
        hidden_features: int = 100,
        num_hidden_layers: int = 2,
        order: Tensor | None = None,
    ) -> None:
        super().__init__()
        if features < 1 or hidden_features < 1 or num_hidden_layers < 1:
            raise ValueError("MADE needs features, hidden_features, num_hidden_layers >= 1")
        self.features, self.num_params = features, num_params
        order = torch.arange(features) if order is None else torch.as_tensor(order)
        if sorted(order.tolist()) != list(range(features)):
            raise ValueError(f"order must be a permutation of range({features})")
        in_degree = torch.empty(features, dtype=torch.long)
        in_degree[order] = torch.arange(1, features + 1)  # dimension order[k] has degree k + 1
        # Hidden degrees cycle through 1..H-1 (0 when H == 1: hidden units then see context only).
        span = max(1, features - 1)
        hid_degree = torch.arange(hidden_features) % span + min(1, features - 1)
        self.register_buffer("order", order)

        layers = [MaskedLinear(hid_degree[:, None] >= in_degree[None, :])]
        for _ in range(num_hidden_layers - 1):
            layers.append(MaskedLinear(hid_degree[:, None] >= hid_degree[None, :]))
        out_mask = (in_degree[:, None] > hid_degree[None, :]).repeat_interleave(num_params, 0)
        layers.append(MaskedLinear(out_mask))
        self.layers = nn.ModuleList(layers)
        self.context = nn.Linear(context_features, hidden_features) if context_features else None
        # Start close to (but not exactly at) a fixed map, as the reference does.
        nn.init.uniform_(self.layers[-1].weight, -1e-3, 1e-3)
        nn.init.zeros_(self.layers[-1].bias)

    def context_term(self, context: Tensor | None) -> Tensor | None:
        """The first layer's context contribution; compute once and reuse across passes."""
        if self.context is None or context is None:
            return None
        return self.context(context)  # [..., hidden]

    def forward(
        self, x: Tensor, context: Tensor | None = None, context_term: Tensor | None = None
    ) -> Tensor:
        h = self.layers[0](x)  # [..., hidden]
        if context_term is None:
            context_term = self.context_term(context)
        if context_term is not None:
            h = h + context_term
        for layer in self.layers[1:]:
            h = layer(F.relu(h))
        return h.unflatten(-1, (self.features, self.num_params))  # [..., H, P]
