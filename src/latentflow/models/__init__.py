"""Models in plain PyTorch: flow priors, time conditioners, the latent flow VAE and the LSTM
baseline. Parts are injected (``latentflow.protocols``), never chosen by name.

* ``priors``: the sequence priors p(z | T) (AF-in-time, IAF-in-time, independent).
* ``conditioners``: the time conditioners (LSTM, causal attention) giving each step's context.
* ``tarflow``: ``TarFlowPrior``, stacked causal-Transformer flow blocks in time (TarFlowLM).
* ``vae``: ``LatentFlowModel``, q(z|x), p(x|z) and the prior, with the ELBO.
* ``bilstm``: the 2019 encoder and decoder (BiLSTMs); ``codebook``: TarFlowLM's codebook
  encoder and its tied Bayes-classifier decoder.
* ``baseline``: ``LSTMLanguageModel``, the LSTM baseline.
* ``objectives``: the ELBO and importance-sampled NLL estimators, both metric conventions.
* ``position``: length conditioning and masks; ``recurrent``: LSTM helpers (bidirectional
  without packing, one step, kernel switch);
  ``emission``: p(x_t | z_t, ...) for text and music.
* ``build``: a model from component nodes; ``compile``: ``torch.compile`` of the flow stacks.
"""

from latentflow.models.baseline import LSTMLanguageModel
from latentflow.models.bilstm import BiLSTMDecoder, BiLSTMEncoder
from latentflow.models.codebook import CodebookEncoder, TiedCodebookDecoder
from latentflow.models.conditioners import AttentionConditioner, LSTMConditioner
from latentflow.models.objectives import importance_sampled_log_likelihood, nll_metrics
from latentflow.models.position import LengthConditioning, sequence_mask
from latentflow.models.priors import AFTimePrior, IAFTimePrior, IndependentPrior, SequencePrior
from latentflow.models.tarflow import TarFlowPrior
from latentflow.models.vae import LatentFlowModel

__all__ = [
    "AFTimePrior",
    "AttentionConditioner",
    "BiLSTMDecoder",
    "BiLSTMEncoder",
    "CodebookEncoder",
    "IAFTimePrior",
    "IndependentPrior",
    "LSTMConditioner",
    "LSTMLanguageModel",
    "LatentFlowModel",
    "LengthConditioning",
    "SequencePrior",
    "TarFlowPrior",
    "TiedCodebookDecoder",
    "importance_sampled_log_likelihood",
    "nll_metrics",
    "sequence_mask",
]
