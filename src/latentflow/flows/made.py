"""MADE: a masked feed-forward network with autoregressive outputs (Germain et al., 2015).

Output ``i`` (all ``P`` parameters of dimension ``i``) depends only on the inputs that come before
``i`` in ``order``; the context vector enters the first layer unmasked.
"""

from __future__ import annotations

from collections.abc import Callable

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
        context_features: int,
        hidden_features: int,
        num_hidden_layers: int,
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

    @torch.no_grad()
    def fill(
        self,
        solve: Callable[[int, Tensor], Tensor | float],
        num_rows: int,
        context_term: Tensor | None = None,
    ) -> Tensor:
        """Build x [N, H] one dimension at a time, in ``order``, without autograd (sampling).

        For the k-th dimension i = order[k], computes that dimension's parameters given the
        x already filled in, [N, P], and calls ``solve(i, params)`` for x_i ([N], or a Python
        float when N = 1). Pass k needs only output i, and its input changes by one dimension
        per pass, so the first layer's pre-activation is updated in place (rank 1), the hidden
        layers run once per pass on preallocated buffers and the last layer computes only the
        P rows of dimension i: H cheap passes instead of H full ones. ``context_term`` is
        ``self.context_term(context)`` flattened to [N, hidden].
        """
        first, *middle, last = self.layers
        H, P, N = self.features, self.num_params, num_rows
        # Masked weights once per call, laid out for the per-dimension passes.
        w_in = (first.weight * first.mask).t().contiguous().unbind(0)  # H x [hidden]: from x_i
        w_hidden = [(layer.weight * layer.mask).t().contiguous() for layer in middle]
        w_out = (last.weight * last.mask).view(H, P, -1).transpose(1, 2).contiguous().unbind(0)
        b_out = last.bias.view(H, P).unbind(0)  # H x [P]; w_out: H x [hidden, P]
        pre = first.bias.expand(N, -1).clone()  # [N, hidden]: first layer, x_{<k} filled in
        if context_term is not None:
            pre += context_term
        act = torch.empty_like(pre)  # [N, hidden]
        hidden = [pre.new_empty(N, w.shape[1]) for w in w_hidden]
        params = pre.new_empty(N, P)
        x = pre.new_zeros(N, H)
        floats: dict[int, float] = {}  # N = 1: x_i as Python floats, written into x at the end
        for i in self.order.tolist():
            torch.clamp_min(pre, 0.0, out=act)
            h = act
            for w, layer, out in zip(w_hidden, middle, hidden, strict=True):
                h = torch.addmm(layer.bias, h, w, out=out).clamp_min_(0.0)
            torch.addmm(b_out[i], h, w_out[i], out=params)  # [N, P]
            xi = solve(i, params)
            if isinstance(xi, float):
                floats[i] = xi
                pre.add_(w_in[i], alpha=xi)
            else:
                x[:, i] = xi
                pre.addr_(x[:, i], w_in[i])
        if floats:
            x[0, list(floats)] = x.new_tensor(list(floats.values()))
        return x
