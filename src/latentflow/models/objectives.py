"""Estimators and metric conventions shared by the flow model and the LSTM baseline."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor


def importance_sampled_log_likelihood(
    log_weights: Callable[[int], Tensor], num_samples: int, chunk_size: int
) -> tuple[Tensor, Tensor]:
    r"""``log p(x) ~= logsumexp_s log w_s - log S`` with its Monte-Carlo standard error.

    Args:
        log_weights: ``n -> [n, B]`` log importance weights
            ``log p(x, z_s) - log q(z_s | x)`` for ``n`` fresh proposal samples.
        num_samples: S >= 1.
        chunk_size: at most this many samples per call (the memory cap).

    Returns:
        ``(estimate [B], stderr [B])``. The standard error is the delta-method one for the log
        of a mean: ``std(w) / (sqrt(S) mean(w))``, computed from max-normalised weights.
    """
    if num_samples < 1:
        raise ValueError(f"eval.num_samples must be >= 1, got {num_samples}")
    if chunk_size < 1:
        raise ValueError(f"eval.chunk_size must be >= 1, got {chunk_size}")
    chunks, done = [], 0
    while done < num_samples:
        n = min(chunk_size, num_samples - done)
        chunks.append(log_weights(n))  # [n, B]
        done += n
    lw = torch.cat(chunks, 0).double()  # [S, B]
    estimate = torch.logsumexp(lw, 0) - math.log(num_samples)
    w = torch.exp(lw - lw.max(0, keepdim=True).values)  # [S, B], max 1
    if num_samples > 1:
        stderr = w.std(0, unbiased=True) / (math.sqrt(num_samples) * w.mean(0))
    else:
        stderr = torch.full_like(estimate, float("nan"))
    return estimate, stderr


def nll_metrics(
    log_px: float,
    log_pT: float,
    num_tokens: float,
    num_sequences: float,
    text: bool,
    log_px_var: float | None = None,
) -> dict[str, float]:
    r"""Both metric conventions from summed quantities (sums, never means of batch means).

    * ``paper``: :math:`-(\sum \log p(x|T) + \sum \log p(T)) / \sum (T + 1)`, the paper's and the
      reference code's (bits per character for text, nats per step for music);
    * ``cond``: :math:`-\sum \log p(x|T) / \sum T` (the music literature's convention).

    ``log_px_var`` is the summed per-sequence Monte-Carlo variance of ``log p(x|T)``; its root
    scaled like each metric gives that metric's standard error.
    """
    scale = 1.0 / math.log(2.0) if text else 1.0
    unit = "bpc" if text else "nats"
    denom_paper = num_tokens + num_sequences
    out = {
        f"nll_paper_{unit}": -(log_px + log_pT) / denom_paper * scale,
        f"nll_cond_{unit}": -log_px / num_tokens * scale,
        "nll_nats_per_token": -log_px / num_tokens,
    }
    if text:
        out["perplexity"] = math.exp(-log_px / num_tokens)
    if log_px_var is not None:
        se = math.sqrt(max(log_px_var, 0.0))
        out[f"nll_paper_{unit}_stderr"] = se / denom_paper * scale
        out[f"nll_cond_{unit}_stderr"] = se / num_tokens * scale
    return out
