"""Models in plain PyTorch: flow priors, time conditioners, the latent flow VAE and the LSTM
baseline. Parts are injected (``latentflow.protocols``), never chosen by name."""

from latentflow.models.baseline import LSTMLanguageModel
from latentflow.models.conditioners import AttentionConditioner, LSTMConditioner
from latentflow.models.objectives import importance_sampled_log_likelihood, nll_metrics
from latentflow.models.position import LengthConditioning, sequence_mask
from latentflow.models.priors import AFTimePrior, IAFTimePrior, IndependentPrior, SequencePrior
from latentflow.models.vae import LatentFlowModel

__all__ = [
    "AFTimePrior",
    "AttentionConditioner",
    "IAFTimePrior",
    "IndependentPrior",
    "LSTMConditioner",
    "LSTMLanguageModel",
    "LatentFlowModel",
    "LengthConditioning",
    "SequencePrior",
    "importance_sampled_log_likelihood",
    "nll_metrics",
    "sequence_mask",
]
