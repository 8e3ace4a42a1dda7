"""The 2019 paper's encoder and decoder (Sec. 5, sizes in Supp. D): BiLSTMs over the whole
sequence, conditioned on the length (``model.encoder=bilstm``, ``model.decoder=bilstm``, the
defaults; ``latentflow.protocols.SequenceEncoder`` / ``SequenceDecoder``).

* ``BiLSTMEncoder``: q(z_t | x) = N(mu_t, diag exp(logvar_t)), (mu, logvar)_t from a BiLSTM over
  [x embedding ; length one-hots].
* ``BiLSTMDecoder``: p(x_t | z_{1:T}) from a BiLSTM over [z ; length one-hots], its output and
  z_t mapped to emission logits; ``tie_weights`` ties the output layer to the encoder's input
  embedding (text).

Both set ``flat_state = True``: the model registers their layers directly on itself (``embed``,
``enc_pos``, ``encoder``, ``to_q``; ``dec_pos``, ``decoder``, ``to_features``, ``out``), the
attribute paths of every checkpoint written before the encoder and decoder were parts. That is
why the layers carry these names here.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from latentflow.models.position import LengthConditioning
from latentflow.models.recurrent import bidirectional_lstm


def check_dropout(p: float) -> None:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout must lie in [0, 1), got {p}")


class BiLSTMEncoder(nn.Module):
    """q(z | x, T): a ``num_layers`` x ``hidden_dim`` BiLSTM over [x embedding (``embed_dim``) ;
    length one-hots (2 x ``pos_dim``)], then a linear map to (mu, logvar) per step. ``dropout``
    (beyond the paper, which has none here; 0 by default): between the LSTM's layers and on
    its output, in training."""

    flat_state = True

    def __init__(
        self,
        num_features: int,
        max_length: int,
        text: bool,
        latent_dim: int,
        *,
        embed_dim: int,
        hidden_dim: int,
        num_layers: int,
        pos_dim: int,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_dropout(dropout)
        self.text, self.dropout = text, dropout
        # layers in the order (and under the names) of the 2019 model: same initial weights
        self.embed = nn.Embedding(num_features, embed_dim) if text else None
        self.embed_music = None if text else nn.Linear(num_features, embed_dim)
        self.enc_pos = LengthConditioning(max_length, pos_dim)
        self.encoder = nn.LSTM(
            embed_dim + 2 * pos_dim,
            hidden_dim,
            num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if num_layers > 1 else 0.0,  # between layers only
        )
        self.to_q = nn.Linear(2 * hidden_dim, 2 * latent_dim)

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of q(z_t | x): each [B, T, H]."""
        emb = self.embed(x) if self.text else self.embed_music(x)  # [B, T, E]
        h = torch.cat([emb, self.enc_pos(lengths, x.shape[1])], -1)
        h = bidirectional_lstm(self.encoder, h, lengths)  # [B, T, 2 hidden]
        # the LSTM's flag: the model registers it, not this object, and Lightning sets flags module
        # by module (``model.train()`` is not called after a validation)
        training = self.encoder.training
        q = self.to_q(F.dropout(h, self.dropout, training) if self.dropout else h)
        # Under bf16 autocast the layers return bf16: the sampling of z, log q and everything
        # downstream of the networks stays in the parameters' dtype (fp32).
        mu, logvar = q.to(self.to_q.weight.dtype).chunk(2, -1)
        return mu, logvar


class BiLSTMDecoder(nn.Module):
    """p(x_t | z_{1:T}, T): a BiLSTM over [z ; length one-hots], then
    ``Linear([h_t ; z_t] -> embed_dim)`` and the output layer ``Linear(embed_dim -> V | 88)``,
    tied to the encoder's ``embed`` for text when ``tie_weights``. ``dropout`` as the
    encoder's."""

    flat_state = True

    def __init__(
        self,
        num_features: int,
        max_length: int,
        text: bool,
        latent_dim: int,
        encoder: nn.Module,
        *,
        embed_dim: int,
        hidden_dim: int,
        num_layers: int,
        pos_dim: int,
        tie_weights: bool,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_dropout(dropout)
        H, self.dropout = latent_dim, dropout
        self.dec_pos = LengthConditioning(max_length, pos_dim)
        self.decoder = nn.LSTM(
            H + 2 * pos_dim,
            hidden_dim,
            num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if num_layers > 1 else 0.0,  # between layers only
        )
        self.to_features = nn.Linear(2 * hidden_dim + H, embed_dim)
        self.out = nn.Linear(embed_dim, num_features)
        if text and tie_weights:
            embed = getattr(encoder, "embed", None)
            if not isinstance(embed, nn.Embedding) or embed.weight.shape != self.out.weight.shape:
                raise ValueError(
                    "tie_weights needs an encoder with an input embedding `embed` of shape "
                    f"{tuple(self.out.weight.shape)} (the BiLSTM encoder's); set "
                    "model.decoder.tie_weights=false with this encoder"
                )
            self.out.weight = embed.weight

    def forward(self, z: Tensor, lengths: Tensor) -> Tensor:
        """Emission logits [B, T, V | 88] given the whole latent sequence."""
        h = bidirectional_lstm(
            self.decoder, torch.cat([z, self.dec_pos(lengths, z.shape[1])], -1), lengths
        )
        h = (
            F.dropout(h, self.dropout, self.decoder.training) if self.dropout else h
        )  # as encoder's
        logits = self.out(self.to_features(torch.cat([h, z.to(h.dtype)], -1)))
        return logits.to(self.out.weight.dtype)  # fp32 log-probabilities under autocast
