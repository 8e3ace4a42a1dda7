"""The latent flow model (paper Sec. 4-5): a mean-field Gaussian q(z|x) (``encoder``), a flow prior
p(z|T), and conditionally independent emissions p(x_t | z_{1:T}, T) (``decoder``). The 2019
paper's encoder and decoder are BiLSTMs (``models.bilstm``, the defaults); TarFlowLM's are a
per-token codebook and its Bayes classifier (``models.codebook``)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor, nn

from latentflow.data.lengths import LengthDistribution
from latentflow.models.bilstm import BiLSTMDecoder, BiLSTMEncoder
from latentflow.models.emission import emission_log_prob, emission_sample
from latentflow.models.objectives import importance_sampled_log_likelihood
from latentflow.models.position import sequence_mask
from latentflow.models.priors import SequencePrior, build_part
from latentflow.models.recurrent import sequence_rnn

LOG_2PI = math.log(2 * math.pi)


def attach(model: nn.Module, name: str, part: nn.Module) -> None:
    """Register ``part`` on ``model`` as ``name``; a part with ``flat_state = True`` (the
    BiLSTM encoder and decoder) has its layers registered on ``model`` itself instead, under
    their own names: the state-dict keys of checkpoints written before parts were components."""
    if not getattr(part, "flat_state", False):
        model.add_module(name, part)
        return
    if (
        next(part.parameters(recurse=False), None) is not None
        or next(part.buffers(recurse=False), None) is not None
    ):
        raise ValueError(f"{name}: a part with flat_state keeps its tensors in child modules")
    for child_name, child in part.named_children():
        if hasattr(model, child_name):
            raise ValueError(f"{name}: its layer {child_name!r} clashes with the model's")
        model.add_module(child_name, child)


def repeat_batch(x: Tensor, n: int) -> Tensor:
    """[B, ...] -> [n * B, ...], sample-major (row s * B + b)."""
    return x.repeat(n, *([1] * (x.dim() - 1)))


class Parts(NamedTuple):
    """The model's encoder and decoder (a plain tuple: registering them is ``attach``'s job)."""

    encoder: nn.Module
    decoder: nn.Module


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
            q(z | x) and p(x | z) (the default encoder and decoder).
        pos_dim: size of each length-conditioning embedding.
        tie_weights: tie the encoder's input embedding and the decoder's output layer (text).
        encoder: q(z | x, T) (``latentflow.protocols.SequenceEncoder``), a module or a factory
            called as ``encoder(num_features, max_length, text, latent_dim)``; None: the
            paper's ``BiLSTMEncoder`` of the sizes above.
        decoder: p(x | z, T) (``SequenceDecoder``), a module or a factory called with the same
            wiring and ``encoder``; None: the paper's ``BiLSTMDecoder``.
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
        encoder: nn.Module | Callable[..., nn.Module] | None = None,
        decoder: nn.Module | Callable[..., nn.Module] | None = None,
        length_distribution: LengthDistribution | None = None,
    ) -> None:
        super().__init__()
        self.text = text
        self.prior = build_part(prior, max_length=max_length)
        self.latent_dim = H = self.prior.latent_dim
        if length_distribution is None:
            length_distribution = LengthDistribution.empty(max_length)
        self.length_distribution = length_distribution
        sizes = {"embed_dim": embed_dim, "hidden_dim": hidden_dim, "num_layers": num_layers}
        sizes["pos_dim"] = pos_dim
        if encoder is None:
            encoder = functools.partial(BiLSTMEncoder, **sizes)
        if decoder is None:
            decoder = functools.partial(BiLSTMDecoder, **sizes, tie_weights=tie_weights)
        wiring = {"num_features": num_features, "max_length": max_length, "text": text}
        wiring["latent_dim"] = H
        enc = build_part(encoder, **wiring)
        self.parts = Parts(enc, build_part(decoder, **wiring, encoder=enc))
        attach(self, "encoder", self.parts.encoder)
        attach(self, "decoder", self.parts.decoder)

    def train(self, mode: bool = True) -> LatentFlowModel:
        super().train(mode)
        for part in self.parts:  # a flat part's own flag (its layers are children already)
            part.train(mode)
        return self

    # ------------------------------------------------------------------ components
    def encode(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of q(z_t | x): each [B, T, H]."""
        return self.parts.encoder(x, lengths)

    def decode(self, z: Tensor, lengths: Tensor) -> Tensor:
        """Emission logits [B, T, V | 88] given the whole latent sequence."""
        return self.parts.decoder(z, lengths)

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
