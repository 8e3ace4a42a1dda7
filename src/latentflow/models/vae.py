"""The latent flow model (paper Sec. 4-5): q(z|x) mean-field Gaussian from a BiLSTM, a flow prior
p(z|T), and conditionally independent emissions p(x_t | z_{1:T}, T) from a BiLSTM over z."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from latentflow.data.lengths import LengthDistribution
from latentflow.models.emission import emission_log_prob, emission_sample
from latentflow.models.objectives import importance_sampled_log_likelihood
from latentflow.models.position import LengthConditioning, sequence_mask
from latentflow.models.priors import SequencePrior, build_part
from latentflow.models.recurrent import bidirectional_lstm, sequence_rnn

LOG_2PI = math.log(2 * math.pi)


def repeat_batch(x: Tensor, n: int) -> Tensor:
    """[B, ...] -> [n * B, ...], sample-major (row s * B + b)."""
    return x.repeat(n, *([1] * (x.dim() - 1)))


class LatentFlowModel(nn.Module):
    """Latent-variable model with a flow prior over a continuous latent sequence.

    Args:
        prior: the prior p(z | T) over z in R^{T x H}: a ``SequencePrior`` module, or a
            factory called as ``prior(max_length=...)`` (a config node); H is its
            ``latent_dim``, the size of z_t everywhere in the model.
        num_features: V (text vocabulary, padding id 0) or 88 (piano keys).
        max_length: largest T the length one-hots cover (longer ones clamp).
        text: Categorical emissions (True) or 88 independent Bernoullis (False).
        embed_dim, hidden_dim, num_layers: embedding size; width and depth of the BiLSTMs of
            q(z | x) and p(x | z).
        pos_dim: size of each length-conditioning embedding.
        tie_weights: tie the encoder's input embedding and the decoder's output layer (text).
        length_distribution: p(T) (``LengthDistribution``); None gives an empty one of the
            right size, filled by ``load_state_dict`` (a checkpoint).
    """

    def __init__(
        self,
        prior: SequencePrior | Callable[..., SequencePrior],
        num_features: int,
        max_length: int,
        text: bool,
        *,
        embed_dim: int,
        hidden_dim: int,
        num_layers: int,
        pos_dim: int,
        tie_weights: bool,
        length_distribution: LengthDistribution | None = None,
    ) -> None:
        super().__init__()
        self.text = text
        self.prior = build_part(prior, max_length=max_length)
        self.latent_dim = H = self.prior.latent_dim
        if length_distribution is None:
            length_distribution = LengthDistribution.empty(max_length)
        self.length_distribution = length_distribution
        # q(z | x): BiLSTM over [x embedding ; length one-hots] -> mean, log-variance per step
        self.embed = nn.Embedding(num_features, embed_dim) if text else None
        self.embed_music = None if text else nn.Linear(num_features, embed_dim)
        self.enc_pos = LengthConditioning(max_length, pos_dim)
        self.encoder = nn.LSTM(
            embed_dim + 2 * pos_dim, hidden_dim, num_layers, batch_first=True, bidirectional=True
        )
        self.to_q = nn.Linear(2 * hidden_dim, 2 * H)
        # p(x | z): BiLSTM over [z ; length one-hots] -> features -> emission logits
        self.dec_pos = LengthConditioning(max_length, pos_dim)
        self.decoder = nn.LSTM(
            H + 2 * pos_dim, hidden_dim, num_layers, batch_first=True, bidirectional=True
        )
        self.to_features = nn.Linear(2 * hidden_dim + H, embed_dim)
        self.out = nn.Linear(embed_dim, num_features)
        if text and tie_weights:
            self.out.weight = self.embed.weight

    # ------------------------------------------------------------------ components
    def encode(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of q(z_t | x): each [B, T, H]."""
        emb = self.embed(x) if self.text else self.embed_music(x)  # [B, T, E]
        h = torch.cat([emb, self.enc_pos(lengths, x.shape[1])], -1)
        q = self.to_q(bidirectional_lstm(self.encoder, h, lengths))  # [B, T, 2H]
        # Under bf16 autocast the layers return bf16: the sampling of z, log q and everything
        # downstream of the networks stays in the parameters' dtype (fp32).
        mu, logvar = q.to(self.to_q.weight.dtype).chunk(2, -1)
        return mu, logvar

    def decode(self, z: Tensor, lengths: Tensor) -> Tensor:
        """Emission logits [B, T, V | 88] given the whole latent sequence."""
        h = bidirectional_lstm(
            self.decoder, torch.cat([z, self.dec_pos(lengths, z.shape[1])], -1), lengths
        )
        logits = self.out(self.to_features(torch.cat([h, z.to(h.dtype)], -1)))
        return logits.to(self.out.weight.dtype)  # fp32 log-probabilities under autocast

    def _joint_terms(
        self, x: Tensor, lengths: Tensor, mu: Tensor, logvar: Tensor, n: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        """For n samples z ~ q: (log p(x|z), log p(z|T), log q(z|x)), each [n, B]."""
        B, T = lengths.shape[0], x.shape[1]
        mask = sequence_mask(lengths, T)  # [B, T]
        noise = torch.randn(n, *mu.shape, device=mu.device, dtype=mu.dtype)  # [n, B, T, H]
        z = (mu + torch.exp(0.5 * logvar) * noise).flatten(0, 1)  # [n * B, T, H]
        log_q = -0.5 * (noise.square() + logvar + LOG_2PI).sum(-1)  # [n, B, T]
        log_q = log_q.masked_fill(~mask, 0.0).sum(-1)  # [n, B]
        lengths_n = lengths.repeat(n)
        log_p = self.prior.log_prob(z, lengths_n).view(n, B)
        logits = self.decode(z, lengths_n)
        recon = emission_log_prob(logits, repeat_batch(x, n), repeat_batch(mask, n), self.text)
        return recon.view(n, B), log_p, log_q

    # ------------------------------------------------------------------ objectives
    def elbo(
        self, x: Tensor, lengths: Tensor, num_samples: int = 10, kl_weight: float | Tensor = 1.0
    ) -> dict[str, Tensor]:
        """K-sample ELBO terms per sequence (each [B], averaged over the K samples).

        ``recon`` = E_q log p(x|z,T); ``kl`` = E_q [log q(z|x) - log p(z|T)] (Monte Carlo);
        ``elbo`` = recon - kl; ``objective`` = recon - kl_weight * kl (KL annealing).
        """
        if num_samples < 1:
            raise ValueError(f"model.elbo_samples must be >= 1, got {num_samples}")
        mu, logvar = self.encode(x, lengths)
        recon, log_p, log_q = self._joint_terms(x, lengths, mu, logvar, num_samples)
        recon, kl = recon.mean(0), (log_q - log_p).mean(0)
        return {
            "recon": recon,
            "kl": kl,
            "elbo": recon - kl,
            "objective": recon - kl_weight * kl,
        }

    training_terms = elbo

    @torch.no_grad()
    def evaluate(
        self, x: Tensor, lengths: Tensor, num_samples: int = 50, chunk_size: int = 10
    ) -> dict[str, Tensor]:
        """Importance-sampled log p(x | T) per sequence with q as proposal, and the ELBO terms
        from the same samples. Samples are folded into the batch ``chunk_size`` at a time (the
        memory cap). Returns ``{"log_px", "stderr", "recon", "kl"}``, each [B]; ``stderr`` is
        the Monte-Carlo standard error of ``log_px``."""
        mu, logvar = self.encode(x, lengths)
        sums = {"recon": 0.0, "kl": 0.0}

        def log_weights(n: int) -> Tensor:
            recon, log_p, log_q = self._joint_terms(x, lengths, mu, logvar, n)
            sums["recon"] = sums["recon"] + recon.double().sum(0)
            sums["kl"] = sums["kl"] + (log_q - log_p).double().sum(0)
            return recon + log_p - log_q  # [n, B]

        log_px, stderr = importance_sampled_log_likelihood(log_weights, num_samples, chunk_size)
        return {
            "log_px": log_px,
            "stderr": stderr,
            "recon": sums["recon"] / num_samples,
            "kl": sums["kl"] / num_samples,
        }

    def log_likelihood(
        self, x: Tensor, lengths: Tensor, num_samples: int = 50, chunk_size: int = 10
    ) -> tuple[Tensor, Tensor]:
        """``(log p(x | T) estimate [B], its Monte-Carlo standard error [B])``: see evaluate."""
        out = self.evaluate(x, lengths, num_samples, chunk_size)
        return out["log_px"], out["stderr"]

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def sample(
        self,
        lengths: Tensor | None = None,
        num_samples: int | None = None,
        temperature: float = 1.0,
        argmax: bool = False,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """T ~ p(T) (unless ``lengths`` given), z ~ p(z|T), x ~ p(x|z,T): a real draw by default.

        Returns ``{"x", "lengths", "z", "log_pz"}``; padded steps of x are 0.
        """
        lengths = sample_lengths(self, lengths, num_samples, generator)
        z, log_pz = self.prior.sample(lengths, temperature, generator)
        with sequence_rnn(int(lengths.max())):  # the whole-sequence BiLSTM: the faster kernel
            logits = self.decode(z, lengths)
        x = emission_sample(logits, self.text, argmax, generator)
        mask = sequence_mask(lengths, x.shape[1])
        x = x * (mask if self.text else mask[..., None])
        return {"x": x, "lengths": lengths, "z": z, "log_pz": log_pz}


def sample_lengths(
    model: nn.Module,
    lengths: Tensor | None,
    num_samples: int | None,
    generator: torch.Generator | None,
) -> Tensor:
    """Lengths as given, or ``num_samples`` draws from the model's p(T)."""
    device = next(model.parameters()).device
    if lengths is not None:
        lengths = torch.as_tensor(lengths, dtype=torch.long, device=device)
        if lengths.dim() != 1 or (lengths < 1).any():
            raise ValueError("sample lengths must be a 1-D tensor of positive integers")
        return lengths
    if num_samples is None or num_samples < 1:
        raise ValueError("sample needs lengths or num_samples >= 1")
    if model.length_distribution is None:
        raise ValueError("this model has no length distribution p(T): pass lengths explicitly")
    return model.length_distribution.sample(num_samples, generator=generator).to(device)
