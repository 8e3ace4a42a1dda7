"""TarFlowLM's encoder and decoder (Zhang, Zhai, Gu et al., NeurIPS 2025, arXiv 2507.00425):
a per-token Gaussian codebook and the Bayes classifier that reads it back.

* ``CodebookEncoder`` (``encoder=codebook``): q(z_t | x_t = k) = N(mu_k, diag sigma_k^2), one
  entry per symbol, no recurrent encoder: every dependency between steps is the prior's.
* ``TiedCodebookDecoder`` (``decoder=tied_codebook``): p(x_t = k | z_t) ∝ pi_k N(z_t; mu_k,
  diag sigma_k^2) with the encoder's own (mu_k, sigma_k) and learned class weights pi: the
  posterior of the codebook's mixture, so the decoder adds V parameters and no network.

Music (88 keys a step, several at once) has no symbol per step. The encoder's analogue is the
same map made linear in the multi-hot vector, (mu, log sigma)(x_t) = W x_t + b (a one-hot row
of W is a codebook entry, a chord the sum of its keys'). The tie has no analogue: its normaliser
runs over the 2^88 chords. The decoder is then 88 Bernoullis from a one-hidden-layer MLP on
z_t alone, so the emission stays per step as in the text model.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

# log sigma is clamped to [LOG_SIGMA_MIN, LOG_SIGMA_MAX] (sigma in [0.018, 7.39]): no entry
# collapses to a point or spreads over the whole latent space.
LOG_SIGMA_MIN, LOG_SIGMA_MAX = -4.0, 2.0
LOG_2PI = math.log(2 * math.pi)


class CodebookEncoder(nn.Module):
    """q(z_t | x_t): a Gaussian per symbol (text; ``mu``, ``log_sigma`` embeddings [V, H]) or
    linear in the 88-key vector (music; ``mu``, ``log_sigma`` Linear(88 -> H)). mu starts at
    N(0, 1) (text) and sigma at ``init_scale``."""

    def __init__(
        self,
        num_features: int,
        max_length: int,
        text: bool,
        latent_dim: int,
        *,
        init_scale: float = 0.5,
    ) -> None:
        super().__init__()
        if not math.exp(LOG_SIGMA_MIN) <= init_scale <= math.exp(LOG_SIGMA_MAX):
            raise ValueError(f"init_scale must lie in [0.018, 7.39], got {init_scale}")
        self.text = text
        if text:
            self.mu: nn.Module = nn.Embedding(num_features, latent_dim)
            self.log_sigma: nn.Module = nn.Embedding(num_features, latent_dim)
            nn.init.constant_(self.log_sigma.weight, math.log(init_scale))
        else:
            self.mu = nn.Linear(num_features, latent_dim)
            self.log_sigma = nn.Linear(num_features, latent_dim)
            nn.init.zeros_(self.log_sigma.weight)
            nn.init.constant_(self.log_sigma.bias, math.log(init_scale))

    def codebook(self) -> tuple[Tensor, Tensor]:
        """Text: the entries ``(mu [V, H], log_sigma [V, H])`` the tied decoder reads."""
        if not self.text:
            raise ValueError("a music encoder has no codebook (its map is linear in the keys)")
        log_sigma = self.log_sigma.weight.clamp(LOG_SIGMA_MIN, LOG_SIGMA_MAX)
        return self.mu.weight, log_sigma

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """``x [B, T]`` ids or ``[B, T, 88]`` -> (mu, logvar), each [B, T, H]."""
        dtype = self.mu.weight.dtype  # fp32 under bf16 autocast, as the BiLSTM encoder's
        mu, log_sigma = self.mu(x).to(dtype), self.log_sigma(x).to(dtype)
        return mu, 2.0 * log_sigma.clamp(LOG_SIGMA_MIN, LOG_SIGMA_MAX)


class TiedCodebookDecoder(nn.Module):
    """Text: p(x_t = k | z_t) = pi_k N(z_t; mu_k, sigma_k^2) / sum_j pi_j N(z_t; mu_j, sigma_j^2)
    (the Bayes classifier of ``encoder.codebook()``; its logits are these log-posteriors).
    Music: 88 Bernoullis from ``Linear(H -> hidden_features)``, GELU, ``Linear(-> 88)``."""

    def __init__(
        self,
        num_features: int,
        max_length: int,
        text: bool,
        latent_dim: int,
        encoder: nn.Module,
        *,
        hidden_features: int,
    ) -> None:
        super().__init__()
        self.text = text
        if text:
            if not callable(getattr(encoder, "codebook", None)):
                raise ValueError(
                    "the tied codebook decoder reads the encoder's codebook: use "
                    "encoder=codebook (latentflow.models.CodebookEncoder)"
                )
            self.codebook = encoder.codebook  # the encoder's entries (its parameters, not ours)
            self.log_pi = nn.Parameter(torch.zeros(num_features))  # class weights, softmax
        else:
            if hidden_features < 1:
                raise ValueError(f"hidden_features must be >= 1, got {hidden_features}")
            self.net = nn.Sequential(
                nn.Linear(latent_dim, hidden_features),
                nn.GELU(),
                nn.Linear(hidden_features, num_features),
            )

    def forward(self, z: Tensor, lengths: Tensor) -> Tensor:
        """Emission logits [B, T, V | 88]: per step, from z_t alone."""
        if not self.text:
            return self.net(z).to(self.net[-1].weight.dtype)
        mu, log_sigma = self.codebook()  # [V, H] each
        # Eq. (b): log pi_k + log N(z; mu_k, sigma_k^2), the quadratic form expanded into
        # matmuls ([B, T, H] @ [H, V]) so that no [B, T, V, H] tensor is built. Its three terms
        # cancel (each ~|z|^2 / sigma^2, up to 1e5 at the sigma floor): float64 whatever the
        # model's dtype or autocast (float32 lost up to 0.5 nats at |mu| ~ 3; V is small).
        with torch.autocast(z.device.type, enabled=False):
            z, mu, log_sigma = z.double(), mu.double(), log_sigma.double()
            precision = torch.exp(-2.0 * log_sigma)  # [V, H]
            quad = (z * z) @ precision.t() - 2.0 * z @ (mu * precision).t()  # [B, T, V]
            quad = quad + (mu * mu * precision).sum(-1)  # + sum_h mu^2 / sigma^2
            log_norm = log_sigma.sum(-1) + 0.5 * mu.shape[-1] * LOG_2PI  # [V]
            joint = torch.log_softmax(self.log_pi.double(), 0) - log_norm - 0.5 * quad
            # normalised before the cast: the log-numerators reach 1e6 at the sigma floor, where
            # float32 keeps 0.1 nats; the log-posteriors near the top keep 1e-7 of theirs
            return joint.log_softmax(-1).to(self.log_pi.dtype)
