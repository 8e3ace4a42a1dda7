"""LSTM helpers: a bidirectional ``nn.LSTM`` over padded batches without packing, one step of an
``nn.LSTM`` (AF-in-time priors, the baseline) and a switch to PyTorch's own LSTM kernels.

On CPU, ``nn.LSTM`` runs through oneDNN, which re-lays out the weights on every call: cheap over
a long sequence, but a single time step of a 2 x 500 LSTM then costs milliseconds, several times
its arithmetic. ``lstm_step`` computes the same function with ``torch.lstm_cell`` per layer;
``native_rnn`` makes whole-sequence ``nn.LSTM`` calls skip oneDNN; ``sequence_rnn(T)`` picks
the faster of the two for a whole-sequence call of T steps at sampling sizes: PyTorch's kernels
below ``ONEDNN_MIN_STEPS`` steps (oneDNN's per-call weight re-layout dominates there), oneDNN
from there on (its whole-sequence kernel is 1.4-1.6x faster at T = 100-200, batch 1).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from latentflow.models.position import sequence_mask

LSTMState = list[tuple[Tensor, Tensor]]  # (h, c) per layer, each [B, hidden]
R = TypeVar("R")
log = logging.getLogger(__name__)
_BF16_LSTM_UNSUPPORTED = False  # set once oneDNN has refused a bf16 LSTM in this process


def _cpu_bf16_autocast() -> bool:
    return torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


def _to_float(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, (tuple, list)):
        return type(value)(_to_float(v) for v in value)
    return value


def lstm_call(fn: Callable[..., R], *args: Any) -> R:
    """``fn(*args)``, a whole-sequence LSTM call, that survives CPUs whose oneDNN has no bf16
    LSTM (seen on an AMD EPYC with AVX512-BF16 and no AMX: "could not create a primitive
    descriptor"; another AMD EPYC, Zen 4, runs it: ``runtime.cpu_has_bf16_lstm`` probes).
    Under CPU bf16 autocast there the LSTM runs in fp32 (the other matmuls stay bf16), said
    once per process; everywhere else this is just ``fn(*args)``."""
    global _BF16_LSTM_UNSUPPORTED
    if not (_BF16_LSTM_UNSUPPORTED and _cpu_bf16_autocast()):
        try:
            return fn(*args)
        except RuntimeError as error:
            if not (_cpu_bf16_autocast() and "primitive descriptor" in str(error)):
                raise
            _BF16_LSTM_UNSUPPORTED = True
            log.warning("this CPU's oneDNN has no bf16 LSTM: under bf16 the LSTMs run in fp32")
    with torch.autocast("cpu", enabled=False):
        return fn(*_to_float(args))


def reverse_within_length(lengths: Tensor, T: int) -> Tensor:
    """Index [B, T] that reverses each sequence's first ``lengths[b]`` steps and leaves the
    padding where it is (its own inverse): t -> L - 1 - t for t < L, else t."""
    t = torch.arange(T, device=lengths.device)  # [T]
    L = lengths[:, None]  # [B, 1]
    return torch.where(t < L, L - 1 - t, t)  # [B, T]


def bidirectional_lstm(lstm: nn.LSTM, inputs: Tensor, lengths: Tensor) -> Tensor:
    """A bidirectional, batch-first ``nn.LSTM`` over padded inputs [B, T, D] such that padding
    never reaches a valid step: [B, T, 2 * hidden], padded steps zero.

    The same function as running ``lstm`` on a ``PackedSequence``, and the same parameters,
    but without packing: the forward direction runs over the padded batch as it is (padding
    comes after every valid step), the backward one over each sequence reversed within its
    length, one unpacked ``torch.lstm`` call per layer and direction. On CPU a packed LSTM
    cannot use oneDNN and steps a shrinking batch; this is 4x faster on PTB batches of mixed
    lengths (docs: README Performance).
    """
    if not lstm.bidirectional or not lstm.batch_first or lstm.proj_size:
        raise ValueError("bidirectional_lstm needs a bidirectional, batch-first LSTM")
    B, T = inputs.shape[:2]
    if bool((lengths == T).all()):
        return lstm_call(lstm, inputs)[0]  # no padding: one call
    mask = sequence_mask(lengths, T)[..., None]  # [B, T, 1]
    index = reverse_within_length(lengths, T)[..., None]  # [B, T, 1]
    zeros = inputs.new_zeros(1, B, lstm.hidden_size)
    names = ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if lstm.bias else ())
    h = inputs.masked_fill(~mask, 0.0)  # whatever sits in the padding (even inf) stays there
    for layer in range(lstm.num_layers):
        if layer and lstm.dropout and lstm.training:
            h = F.dropout(h, lstm.dropout, training=True)
        outs = []
        for suffix in ("", "_reverse"):
            weights = [getattr(lstm, f"{name}_l{layer}{suffix}") for name in names]
            x = h if not suffix else h.gather(1, index.expand_as(h))  # [B, T, D]
            out = lstm_call(
                torch.lstm,
                x,
                (zeros, zeros),
                weights,
                lstm.bias,
                1,
                0.0,
                lstm.training,
                False,
                True,
            )[0]
            outs.append(out if not suffix else out.gather(1, index.expand_as(out)))
        h = torch.cat(outs, -1).masked_fill(~mask, 0.0)  # [B, T, 2 * hidden]
    return h


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


# Measured (batch 1, 2 threads, the paper's 2 x 500 LSTMs, Xeon with AMX, idle): the prior's
# LSTM at T = 10 / 25 / 200: native 4.7 / 9.9 / 63 ms, oneDNN 7.8 / 8.5 / 41 ms; the decoder's
# BiLSTM: native 11.6 / 22.5 / 147 ms, oneDNN 12.9 / 19.5 / 105 ms.
ONEDNN_MIN_STEPS = 20


def sequence_rnn(steps: int):
    """The faster LSTM backend for a whole-sequence call of ``steps`` steps (module docstring):
    oneDNN from ``ONEDNN_MIN_STEPS`` on, PyTorch's kernels below, whatever the setting around."""
    return onednn(steps >= ONEDNN_MIN_STEPS)


def native_rnn():
    """Within the block, ``nn.LSTM`` on CPU uses PyTorch's kernels rather than oneDNN's.

    Restores the previous setting on exit. Meant for inference: no effect on GPUs.
    """
    return onednn(False)


@contextmanager
def onednn(enabled: bool) -> Iterator[None]:
    """``torch.backends.mkldnn.enabled`` set to ``enabled`` within the block, restored after."""
    previous = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = enabled
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = previous
