"""latentflow: latent normalizing flows for discrete sequences (Ziegler & Rush, ICML 2019).

The core (``latentflow.flows``, ``latentflow.models``) is plain PyTorch; the Lightning and Hydra
layers live in ``latentflow.lightning`` and the entry points ``latentflow.train``,
``latentflow.evaluate`` and ``latentflow.sample``.
"""

__version__ = "0.1.0"
