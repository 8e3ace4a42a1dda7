"""Analytic FLOP counts of a training step / an IS evaluation, from the layer sizes.

Counted: every matmul (2 FLOPs per multiply-add) of the LSTMs, linears and flow networks. Not
counted: elementwise work (gates, NLSq, softmax), which is small next to them. A backward pass is
taken as twice its forward (gradients w.r.t. inputs and weights), so a training step is 3x the
forward FLOPs. The floor of a step is these FLOPs over the machine's dense matmul rate.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sizes:
    vocab: int = 51
    embed: int = 500
    hidden: int = 500
    layers: int = 2
    latent: int = 50
    pos: int = 32
    flow_hidden: int = 100
    flow_layers: int = 5
    params_per_dim: int = 5  # NLSq


def lstm(inp: int, hidden: int, layers: int, directions: int = 1) -> int:
    """Forward FLOPs per token of a stacked (Bi)LSTM."""
    total, n_in = 0, inp
    for _ in range(layers):
        total += directions * 2 * 4 * hidden * (n_in + hidden)
        n_in = directions * hidden
    return total


def linear(n_in: int, n_out: int) -> int:
    return 2 * n_in * n_out


def made_layer(s: Sizes, context: int) -> int:
    h, f = s.latent, s.flow_hidden
    return linear(h, f) + linear(context, f) + linear(f, f) + linear(f, h * s.params_per_dim)


def coupling_layer(s: Sizes, context: int) -> int:
    half, f = s.latent // 2, s.flow_hidden
    return (
        linear(half + context, f) + linear(f, f) + linear(f, (s.latent - half) * s.params_per_dim)
    )


def prior_forward(s: Sizes, time_flow: str, hidden_flow: str) -> int:
    """Forward FLOPs per token (per latent sample) of the prior's density."""
    context = s.hidden if time_flow != "none" else 2 * s.pos
    total = lstm(s.latent + 2 * s.pos, s.hidden, s.layers) if time_flow != "none" else 0
    if hidden_flow == "af":
        total += s.flow_layers * made_layer(s, context)
    elif hidden_flow == "scf":
        total += s.flow_layers * coupling_layer(s, context)
    else:
        total += s.flow_layers * linear(context, s.latent * s.params_per_dim)
    return total


def flow_model_forward(s: Sizes, time_flow: str, hidden_flow: str, samples: int) -> int:
    """Forward FLOPs per token of the flow VAE with ``samples`` latent samples per sequence."""
    encoder = lstm(s.embed + 2 * s.pos, s.hidden, s.layers, 2) + linear(2 * s.hidden, 2 * s.latent)
    decoder = (
        lstm(s.latent + 2 * s.pos, s.hidden, s.layers, 2)
        + linear(2 * s.hidden + s.latent, s.embed)
        + linear(s.embed, s.vocab)
    )
    return encoder + samples * (prior_forward(s, time_flow, hidden_flow) + decoder)


def lstm_baseline_forward(s: Sizes) -> int:
    return (
        lstm(s.embed + 2 * s.pos, s.hidden, s.layers)
        + linear(s.hidden, s.embed)
        + linear(s.embed, s.vocab)
    )


def step_flops(s: Sizes, model: str, tokens: int, samples: int, train: bool = True) -> int:
    """FLOPs of one step over ``tokens`` real tokens (training: forward + backward)."""
    if model == "lstm":
        fwd = lstm_baseline_forward(s)
    else:
        time_flow, hidden_flow = {
            "af_af": ("af", "af"),
            "af_scf": ("af", "scf"),
            "iaf_scf": ("iaf", "scf"),
            "af_only": ("none", "af"),
        }[model]
        fwd = flow_model_forward(s, time_flow, hidden_flow, samples)
    return tokens * fwd * (3 if train else 1)
