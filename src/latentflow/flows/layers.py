"""Flow layers over a vector z in R^H, each conditioned on an optional context vector.

Convention (as in nflows): ``forward(x, context) -> (u, logabsdet)`` maps data to noise (the
density direction); ``inverse(u, context) -> (x, logabsdet)`` maps noise to data and is
differentiable; ``sample(u, context)`` is the same map without autograd, by the fastest exact
algorithm (the sampling path). ``logabsdet`` is ``log |det d output / d input|`` summed over the
last dimension: shape ``x.shape[:-1]``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from latentflow.flows.made import MADE
from latentflow.flows.transforms import ScalarTransform


class FlowLayer(nn.Module):
    """Base class of vector flow layers (the contract: ``latentflow.protocols.HiddenFlow``)."""

    def forward(
        self, x: Tensor, context: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def inverse(
        self, u: Tensor, context: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, u: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``inverse`` without autograd; layers override it with a faster exact path."""
        return self.inverse(u, context)


class AutoregressiveLayer(FlowLayer):
    r"""Autoregressive flow (AF) over the vector: ``u_i = tau(x_i; MADE(x_{<i}, context))``.

    Density (``forward``) is one MADE pass. ``inverse`` takes H full, differentiable MADE
    passes, one per dimension in ``order``; ``sample`` takes H cheap incremental ones
    (``MADE.fill``) and solves each dimension's scalar equation in the transform's ``solve``.
    """

    def __init__(
        self,
        features: int,
        transform: ScalarTransform,
        context_features: int,
        hidden_features: int,
        num_hidden_layers: int,
        reverse: bool = False,
    ) -> None:
        super().__init__()
        order = torch.arange(features)
        self.transform = transform
        self.made = MADE(
            features,
            transform.num_params,
            context_features,
            hidden_features,
            num_hidden_layers,
            order=order.flip(0) if reverse else order,
        )

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        params = self.made(x, context).to(x.dtype)  # [..., H, P]; fp32 under bf16 autocast
        u, ld = self.transform(x, params)  # [..., H]
        return u, ld.sum(-1)

    def inverse(self, u: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        ctx = self.made.context_term(context)
        x = torch.zeros_like(u)
        logabsdet = u.new_zeros(u.shape[:-1])
        for i in self.made.order.tolist():
            params = self.made(x, context_term=ctx)[..., i, :]  # [..., P], final for dim i
            xi, ld = self.transform.inverse(u[..., i], params)
            x = x.clone()  # x was saved by this pass for backward: don't write into it
            x[..., i] = xi
            logabsdet = logabsdet + ld
        return x, logabsdet

    @torch.no_grad()
    def sample(self, u: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``inverse`` by ``MADE.fill``; the log-det is then one density pass at the result
        (the forward log-det, negated): what ``log_prob`` computes for the same x. At batch
        size 1 the scalar equations are solved in Python floats when the transform offers
        ``solve_float`` (tensor operations cost microseconds each)."""
        made, transform = self.made, self.transform
        H = made.features
        ctx = made.context_term(context)
        lead = u.shape[:-1]
        if ctx is not None:
            lead = torch.broadcast_shapes(lead, ctx.shape[:-1])
        u_flat = u.expand(*lead, H).reshape(-1, H)  # [N, H]
        N = u_flat.shape[0]
        ctx_flat = None if ctx is None else ctx.expand(*lead, -1).reshape(N, -1)  # [N, hidden]
        solve_float = getattr(transform, "solve_float", None)
        if N == 1 and solve_float is not None:
            u_vals = u_flat[0].tolist()

            def solve(i: int, params: Tensor) -> Tensor | float:
                try:
                    return solve_float(u_vals[i], params.tolist()[0])
                except (OverflowError, ZeroDivisionError):  # extreme parameters: as tensors do
                    return transform.solve(u_flat[:, i], params)
        else:

            def solve(i: int, params: Tensor) -> Tensor | float:
                return transform.solve(u_flat[:, i], params)

        x = made.fill(solve, N, ctx_flat).to(u.dtype)
        _, ld = transform(x, made(x, context_term=ctx_flat))  # [N, H]
        return x.view(*lead, H), -ld.sum(-1).view(lead)


class CouplingLayer(FlowLayer):
    r"""Split coupling flow (SCF): one half passes through, the other is transformed
    elementwise with parameters from an MLP on ``[pass-through half ; context]`` (Dinh et al.).

    ``swap`` chooses which half passes through; layers alternate it.
    """

    def __init__(
        self,
        features: int,
        transform: ScalarTransform,
        context_features: int,
        hidden_features: int,
        num_hidden_layers: int,
        swap: bool = False,
    ) -> None:
        super().__init__()
        if features < 2:
            raise ValueError(f"a coupling layer needs at least 2 features, got H={features}")
        self.transform = transform
        half = features // 2
        self.identity_dims = features - half if swap else half
        self.swap = swap
        sizes = [self.identity_dims + context_features] + [hidden_features] * num_hidden_layers
        mlp: list[nn.Module] = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
            mlp += [nn.Linear(n_in, n_out), nn.ReLU()]
        out = nn.Linear(sizes[-1], (features - self.identity_dims) * transform.num_params)
        nn.init.uniform_(out.weight, -1e-3, 1e-3)
        nn.init.zeros_(out.bias)
        self.net = nn.Sequential(*mlp, out)

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        # Returns (pass-through, transformed) halves. Views, not copies: the pass-through half
        # must keep its gradient (the reference code copied it with torch.tensor(y): detached).
        n = self.identity_dims
        if self.swap:
            return x[..., -n:], x[..., :-n]
        return x[..., :n], x[..., n:]

    def _join(self, keep: Tensor, moved: Tensor) -> Tensor:
        return torch.cat([moved, keep] if self.swap else [keep, moved], dim=-1)

    def _params(self, keep: Tensor, context: Tensor | None) -> Tensor:
        h = keep if context is None else torch.cat([keep, context], dim=-1)
        params = self.net(h).to(keep.dtype)  # the transform in fp32 under bf16 autocast
        return params.unflatten(-1, (-1, self.transform.num_params))  # [..., H2, P]

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        keep, moved = self._split(x)
        u, ld = self.transform(moved, self._params(keep, context))
        return self._join(keep, u), ld.sum(-1)

    def inverse(self, u: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        keep, moved = self._split(u)
        x, ld = self.transform.inverse(moved, self._params(keep, context))
        return self._join(keep, x), ld.sum(-1)

    @torch.no_grad()
    def sample(self, u: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        keep, moved = self._split(u)
        params = self._params(keep, context)
        x = self.transform.solve(moved, params)
        _, ld = self.transform(x, params)  # log |dx/du| = -log |du/dx| at the root
        return self._join(keep, x), -ld.sum(-1)


class ElementwiseLayer(FlowLayer):
    r"""Independent scalar transform per dimension, parameters from the context alone (an MLP
    with ``num_hidden_layers`` ReLU layers of ``hidden_features``; 0 layers: one
    ``Linear(context -> H * P)``), or free parameters when there is no context.

    This is the paper's "-AF hidden" ablation (Table 2): no dependencies across hidden.
    """

    def __init__(
        self,
        features: int,
        transform: ScalarTransform,
        context_features: int = 0,
        hidden_features: int = 0,
        num_hidden_layers: int = 0,
    ):
        super().__init__()
        self.transform, self.features = transform, features
        n_out = features * transform.num_params
        if context_features:
            sizes = [context_features] + [hidden_features] * num_hidden_layers
            mlp: list[nn.Module] = []
            for n_in, n_hidden in zip(sizes[:-1], sizes[1:], strict=True):
                mlp += [nn.Linear(n_in, n_hidden), nn.ReLU()]
            out = nn.Linear(sizes[-1], n_out)
            nn.init.uniform_(out.weight, -1e-3, 1e-3)
            nn.init.zeros_(out.bias)
            self.net: nn.Module | None = nn.Sequential(*mlp, out) if mlp else out
            self.register_parameter("free", None)
        else:
            self.net = None
            self.free = nn.Parameter(torch.zeros(n_out))

    def _params(self, x: Tensor, context: Tensor | None) -> Tensor:
        if self.net is None:
            flat = self.free.expand(*x.shape[:-1], -1)
        else:
            if context is None:
                raise ValueError("this ElementwiseLayer was built with a context; pass one")
            flat = self.net(context).to(x.dtype)  # fp32 under bf16 autocast
        return flat.unflatten(-1, (self.features, self.transform.num_params))

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        u, ld = self.transform(x, self._params(x, context))
        return u, ld.sum(-1)

    def inverse(self, u: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x, ld = self.transform.inverse(u, self._params(u, context))
        return x, ld.sum(-1)

    @torch.no_grad()
    def sample(self, u: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        params = self._params(u, context)
        x = self.transform.solve(u, params)
        _, ld = self.transform(x, params)
        return x, -ld.sum(-1)


class FlowStack(FlowLayer):
    """Layers applied in sequence; ``forward`` data->noise, ``inverse`` in reverse order."""

    def __init__(self, layers: list[FlowLayer]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        total = x.new_zeros(x.shape[:-1])
        for layer in self.layers:
            x, ld = layer(x, context)
            total = total + ld
        return x, total

    def inverse(self, u: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        total = u.new_zeros(u.shape[:-1])
        for layer in reversed(self.layers):
            u, ld = layer.inverse(u, context)
            total = total + ld
        return u, total

    @torch.no_grad()
    def sample(self, u: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        total = u.new_zeros(u.shape[:-1])
        for layer in reversed(self.layers):
            u, ld = layer.sample(u, context)
            total = total + ld
        return u, total


def standard_normal_log_prob(u: Tensor) -> Tensor:
    """log N(u; 0, I) summed over the last dimension."""
    return -0.5 * (u * u).sum(-1) - 0.5 * u.shape[-1] * torch.log(u.new_tensor(2 * torch.pi))


__all__ = [
    "AutoregressiveLayer",
    "CouplingLayer",
    "ElementwiseLayer",
    "FlowLayer",
    "FlowStack",
    "standard_normal_log_prob",
]
