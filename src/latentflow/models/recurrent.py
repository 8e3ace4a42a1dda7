"""LSTM helpers for sampling: one step of an ``nn.LSTM`` (AF-in-time priors, the baseline) and
a switch to PyTorch's own LSTM kernels.

On CPU, ``nn.LSTM`` runs through oneDNN, which re-lays out the weights on every call: cheap over
a long sequence, but a single time step of a 2 x 500 LSTM then costs milliseconds, several times
its arithmetic. ``lstm_step`` computes the same function with ``torch.lstm_cell`` per layer;
``native_rnn`` makes whole-sequence ``nn.LSTM`` calls skip oneDNN (as fast over long sequences,
without the per-call cost that dominates short ones).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.nn import functional as F

LSTMState = list[tuple[Tensor, Tensor]]  # (h, c) per layer, each [B, hidden]


def lstm_step(
    lstm: nn.LSTM, x: Tensor, state: LSTMState | None = None
) -> tuple[Tensor, LSTMState]:
    """One time step: x [B, D] -> (top layer's output [B, hidden], new state).

    The same function as ``lstm(x[:, None], state)`` (batch-first) with the state kept per
    layer; ``state=None`` starts from zeros. Dropout between layers follows ``lstm.training``.

    >>> lstm = nn.LSTM(3, 4, num_layers=2, batch_first=True).eval()
    >>> x = torch.randn(2, 3)
    >>> out, state = lstm_step(lstm, x)
    >>> ref, _ = lstm(x[:, None])
    >>> bool(torch.allclose(out, ref[:, 0], atol=1e-6))
    True
    """
    if lstm.bidirectional or lstm.proj_size:
        raise ValueError("lstm_step needs a unidirectional LSTM without projections")
    if state is None:
        zeros = x.new_zeros(x.shape[0], lstm.hidden_size)
        state = [(zeros, zeros)] * lstm.num_layers
    new_state: LSTMState = []
    for layer in range(lstm.num_layers):
        if layer and lstm.dropout and lstm.training:
            x = F.dropout(x, lstm.dropout, training=True)
        weights = [getattr(lstm, f"{kind}_l{layer}") for kind in ("weight_ih", "weight_hh")]
        biases = [getattr(lstm, f"{kind}_l{layer}") for kind in ("bias_ih", "bias_hh")]
        h, c = torch.lstm_cell(x, state[layer], *weights, *(biases if lstm.bias else []))
        new_state.append((h, c))
        x = h
    return x, new_state


@contextmanager
def native_rnn() -> Iterator[None]:
    """Within the block, ``nn.LSTM`` on CPU uses PyTorch's kernels rather than oneDNN's.

    Restores the previous setting on exit. Meant for inference: no effect on GPUs.
    """
    previous = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = previous
