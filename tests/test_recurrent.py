"""bidirectional_lstm: the packed-sequence BiLSTM's function and gradients, without packing."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from latentflow.models.recurrent import bidirectional_lstm, reverse_within_length


def packed_reference(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, _ = lstm(packed)
    return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]


def setup(layers: int = 2):
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 4, layers, batch_first=True, bidirectional=True).double()
    lengths = torch.tensor([7, 3, 5, 1])
    x = torch.randn(4, 7, 3, dtype=torch.float64)
    return lstm, x, lengths


def test_reverse_within_length_is_an_involution():
    lengths = torch.tensor([4, 2, 1])
    index = reverse_within_length(lengths, 5)
    assert index.tolist() == [[3, 2, 1, 0, 4], [1, 0, 2, 3, 4], [0, 1, 2, 3, 4]]
    assert torch.equal(index.gather(1, index), torch.arange(5).expand(3, 5))


@pytest.mark.parametrize("layers", [1, 2])
def test_matches_the_packed_lstm_values_and_gradients(layers):
    lstm, x, lengths = setup(layers)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    ref = packed_reference(lstm, x1, lengths)
    out = bidirectional_lstm(lstm, x2, lengths)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    weights = torch.randn_like(ref)
    grads_ref = torch.autograd.grad((ref * weights).sum(), [x1, *lstm.parameters()])
    grads = torch.autograd.grad((out * weights).sum(), [x2, *lstm.parameters()])
    for g, g_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12)


def test_padding_never_reaches_a_valid_step():
    lstm, x, lengths = setup()
    out = bidirectional_lstm(lstm, x, lengths)
    garbage = x.clone()
    pad = torch.arange(7) >= lengths[:, None]  # [B, T]
    garbage[pad] = float("inf")
    x_g = garbage.requires_grad_()
    out_g = bidirectional_lstm(lstm, x_g, lengths)
    torch.testing.assert_close(out_g, out)
    assert (out_g[pad] == 0).all()
    out_g.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in lstm.parameters())
    assert (x_g.grad[pad] == 0).all()


def test_full_length_batch_is_the_plain_call():
    lstm, x, _ = setup()
    lengths = torch.full((4,), 7)
    torch.testing.assert_close(bidirectional_lstm(lstm, x, lengths), lstm(x)[0])


def test_rejects_a_unidirectional_lstm():
    with pytest.raises(ValueError, match="bidirectional"):
        bidirectional_lstm(
            nn.LSTM(3, 4, batch_first=True), torch.zeros(1, 2, 3), torch.tensor([2])
        )


def test_lstm_call_falls_back_to_fp32_where_onednn_has_no_bf16_lstm(monkeypatch):
    """Some AVX512-BF16 CPUs without AMX (an AMD EPYC, 2026-12-02): oneDNN refuses a bf16
    LSTM primitive. Under bf16 autocast the call then runs in fp32 (and every later one,
    without trying again); any other error, or the same error outside autocast, is raised as
    it is."""
    from latentflow.models import recurrent

    monkeypatch.setattr(recurrent, "_BF16_LSTM_UNSUPPORTED", False)
    lstm = nn.LSTM(3, 4, batch_first=True)
    x = torch.randn(2, 5, 3)
    calls = []

    def picky(inputs):  # refuses bf16 as oneDNN does on such a CPU
        calls.append(torch.is_autocast_enabled("cpu"))
        if torch.is_autocast_enabled("cpu"):
            raise RuntimeError("could not create a primitive descriptor for the LSTM forward")
        return lstm(inputs)[0]

    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = recurrent.lstm_call(picky, x.bfloat16())
        again = recurrent.lstm_call(picky, x.bfloat16())
    assert calls == [True, False, False]  # tried once, then fp32 without trying
    assert out.dtype == again.dtype == torch.float32
    torch.testing.assert_close(out, lstm(x.bfloat16().float())[0])

    def refuses(inputs):
        raise RuntimeError("could not create a primitive descriptor")

    with pytest.raises(RuntimeError, match="primitive descriptor"):
        recurrent.lstm_call(refuses, x)  # not under autocast: a real error

    def broken(inputs):
        raise RuntimeError("something else")

    with torch.autocast("cpu", dtype=torch.bfloat16), pytest.raises(RuntimeError, match="else"):
        monkeypatch.setattr(recurrent, "_BF16_LSTM_UNSUPPORTED", False)
        recurrent.lstm_call(broken, x)
