"""Time conditioners: the context c_t = net(v_{<t}, position(t)) that conditions a prior's hidden
flow at step t (``latentflow.protocols.TimeConditioner``). v is z for AF in time, eps for IAF.

A conditioner is built by its prior with ``(in_features=H, position_features=P)``; the rest of
its arguments come from the ``conditioner`` config group.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from latentflow.models.recurrent import LSTMState, lstm_step


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
        out, _ = self.lstm(self.shifted_inputs(v, position))
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
