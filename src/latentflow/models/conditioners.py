"""Time conditioners: the context c_t = net(v_{<t}, position(t)) that conditions a prior's hidden
flow at step t (``latentflow.protocols.TimeConditioner``). v is z for AF in time, eps for IAF.

A conditioner is built by its prior with ``(in_features=H, position_features=P)``; the rest of
its arguments come from the ``conditioner`` config group.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from latentflow.models.recurrent import LSTMState, lstm_call, lstm_step


class LSTMConditioner(nn.Module):
    """A ``num_layers`` x ``hidden_size`` LSTM over [v_{t-1} ; position(t)] (the paper's and
    the reference's), with ``dropout`` between its layers and on its output; v_0 is learned.

    ``parallel`` is one LSTM call over the whole (teacher-forced) sequence; ``step`` runs one
    step through ``lstm_step`` (``torch.lstm_cell`` per layer): one ``nn.LSTM`` call per step
    would re-lay out the weights every time on CPU (oneDNN), several times the step's
    arithmetic. The serial loops (IAF density, AF sampling) use ``step``.
    """

    def __init__(
        self,
        in_features: int,
        position_features: int,
        *,
        hidden_size: int,
        num_layers: int,
        dropout: float,
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        self.lstm = nn.LSTM(
            in_features + position_features,
            hidden_size,
            num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)
        self.start = nn.Parameter(torch.zeros(in_features))  # v_0

    @property
    def out_features(self) -> int:
        return self.lstm.hidden_size

    def shifted_inputs(self, v: Tensor, position: Tensor) -> Tensor:
        start = self.start.expand(v.shape[0], 1, -1)  # [B, 1, H]
        return torch.cat([torch.cat([start, v[:, :-1]], 1), position], -1)  # [B, T, H + P]

    def parallel(self, v: Tensor, position: Tensor) -> Tensor:
        """Contexts of all steps at once: [B, T, hidden]."""
        out, _ = lstm_call(self.lstm, self.shifted_inputs(v, position))
        return self.dropout(out)

    def step(
        self, v_prev: Tensor | None, position_t: Tensor, state: LSTMState | None
    ) -> tuple[Tensor, LSTMState]:
        """One step: v_prev [B, H] (None at t = 0), position_t [B, P] -> (c_t [B, hidden],
        state)."""
        if v_prev is None:
            v_prev = self.start.expand(position_t.shape[0], -1)
        out, state = lstm_step(self.lstm, torch.cat([v_prev, position_t], -1), state)
        return self.dropout(out), state


class _Block(nn.Module):
    """A pre-norm Transformer block: x + attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, width: int, num_heads: int, mlp_ratio: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.mlp = nn.Sequential(
            nn.Linear(width, mlp_ratio * width), nn.GELU(), nn.Linear(mlp_ratio * width, width)
        )
        self.dropout = nn.Dropout(dropout)

    def _heads(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        B, T, W = h.shape
        q, k, v = self.qkv(h).view(B, T, 3, self.num_heads, W // self.num_heads).unbind(2)
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, heads, T, d]

    def _finish(self, x: Tensor, attended: Tensor) -> Tensor:
        B, _, T, _ = attended.shape
        x = x + self.dropout(self.proj(attended.transpose(1, 2).reshape(B, T, -1)))
        return x + self.dropout(self.mlp(self.norm2(x)))

    def forward(self, x: Tensor) -> Tensor:
        """Causal over the whole sequence: [B, T, W] -> [B, T, W]."""
        q, k, v = self._heads(self.norm1(x))
        p = self.dropout.p if self.training else 0.0
        return self._finish(
            x, F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        )

    def step(self, x: Tensor, cache: _KVCache) -> Tensor:
        """One new position: x [B, 1, W]; its key and value join ``cache``."""
        q, k, v = self._heads(self.norm1(x))
        keys, values = cache.append(k, v)  # [B, heads, t + 1, d]
        p = self.dropout.p if self.training else 0.0
        return self._finish(x, F.scaled_dot_product_attention(q, keys, values, dropout_p=p))


class _KVCache:
    """Keys and values of the positions so far. Without autograd (sampling) they live in
    buffers that grow by doubling (no copy of the whole history at every step); with autograd
    (IAF density in training) each step concatenates, since autograd keeps the earlier ones."""

    def __init__(self) -> None:
        self.keys: Tensor | None = None
        self.values: Tensor | None = None
        self.length = 0

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        if torch.is_grad_enabled() and (k.requires_grad or v.requires_grad):
            if self.keys is not None:
                k = torch.cat([self.keys[:, :, : self.length], k], 2)
                v = torch.cat([self.values[:, :, : self.length], v], 2)
            self.keys, self.values, self.length = k, v, k.shape[2]
            return k, v
        if self.keys is None or self.length == self.keys.shape[2]:
            capacity = max(16, 2 * self.length)
            keys = k.new_empty(k.shape[0], k.shape[1], capacity, k.shape[3])
            values = torch.empty_like(keys)
            if self.keys is not None:
                keys[:, :, : self.length] = self.keys[:, :, : self.length]
                values[:, :, : self.length] = self.values[:, :, : self.length]
            self.keys, self.values = keys, values
        self.keys[:, :, self.length : self.length + 1] = k
        self.values[:, :, self.length : self.length + 1] = v
        self.length += 1
        return self.keys[:, :, : self.length], self.values[:, :, : self.length]


class AttentionConditioner(nn.Module):
    """Causal self-attention over [v_{t-1} ; position(t)]: a small pre-norm Transformer
    (``num_layers`` blocks of ``num_heads`` heads, ``width`` wide, MLPs ``mlp_ratio`` x wider)
    whose output at step t is c_t. Position t attends to positions <= t, whose inputs hold
    v_0 (learned) .. v_{t-1}: c_t depends on v_{<t} only.

    ``parallel`` is one causal pass over the whole sequence (AF density, IAF sampling);
    ``step`` runs one position against a key/value cache of the earlier ones (AF sampling, IAF
    density): the same function, no past step recomputed. ``state`` is the per-layer caches.
    """

    def __init__(
        self,
        in_features: int,
        position_features: int,
        *,
        width: int,
        num_layers: int,
        num_heads: int,
        mlp_ratio: int,
        dropout: float,
    ) -> None:
        super().__init__()
        if width < 1 or num_layers < 1 or num_heads < 1 or width % num_heads:
            raise ValueError(
                f"width ({width}) must be a positive multiple of num_heads ({num_heads}), "
                f"num_layers ({num_layers}) >= 1"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        self.start = nn.Parameter(torch.zeros(in_features))  # v_0
        self.embed = nn.Linear(in_features + position_features, width)
        self.blocks = nn.ModuleList(
            _Block(width, num_heads, mlp_ratio, dropout) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(width)
        self.width = width

    @property
    def out_features(self) -> int:
        return self.width

    def parallel(self, v: Tensor, position: Tensor) -> Tensor:
        """Contexts of all steps at once: [B, T, H], [B, T, P] -> [B, T, width]."""
        start = self.start.expand(v.shape[0], 1, -1)  # [B, 1, H]
        x = self.embed(torch.cat([torch.cat([start, v[:, :-1]], 1), position], -1))
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def step(
        self, v_prev: Tensor | None, position_t: Tensor, state: list[_KVCache] | None
    ) -> tuple[Tensor, list[_KVCache]]:
        """One step: v_prev [B, H] (None at t = 0), position_t [B, P] -> (c_t [B, width],
        the caches with step t added)."""
        if v_prev is None:
            v_prev = self.start.expand(position_t.shape[0], -1)
        if state is None:
            state = [_KVCache() for _ in self.blocks]
        x = self.embed(torch.cat([v_prev, position_t], -1))[:, None]  # [B, 1, W]
        for block, cache in zip(self.blocks, state, strict=True):
            x = block.step(x, cache)
        return self.norm(x[:, 0]), state
