"""Models in plain PyTorch: flow priors, the latent flow VAE and the LSTM baseline."""

from latentflow.models.baseline import LSTMLanguageModel
from latentflow.models.objectives import importance_sampled_log_likelihood, nll_metrics
from latentflow.models.position import LengthConditioning, sequence_mask
from latentflow.models.priors import (
    AFTimePrior,
    IAFTimePrior,
    IndependentPrior,
    SequencePrior,
    build_prior,
)
from latentflow.models.vae import LatentFlowModel

__all__ = [
    "AFTimePrior",
    "IAFTimePrior",
    "IndependentPrior",
    "LSTMLanguageModel",
    "LatentFlowModel",
    "LengthConditioning",
    "SequencePrior",
    "build_prior",
    "importance_sampled_log_likelihood",
    "nll_metrics",
    "sequence_mask",
]
