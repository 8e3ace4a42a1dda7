"""The contracts between the swappable parts of latentflow, in one place.

A part is any class (ours or a user's, in any module) whose instances have these members; it is
chosen in the config by a ``_target_`` node and built by the framework, which calls it with the
*wiring* arguments listed under each protocol (sizes that come from the data or from the part
around it) plus the node's own keys. ``latentflow-train`` checks every built part against its
protocol at start-up and names the key of one that does not fit.

Direction convention (one, everywhere): ``forward`` maps data to noise (z -> eps, the density
direction); ``inverse`` maps noise to data (sampling) and is differentiable; ``solve`` /
``sample`` are the sampling paths without autograd (they may be faster, never different).
``logabsdet`` is ``log |det d output / d input|``.

=====================  ====================  =================================================
config key             protocol              called with (wiring) -> returns
=====================  ====================  =================================================
``prior.flow.transform``  ``ScalarTransform``  ``()`` -> one transform per flow layer
``prior.flow``         ``HiddenFlow``        ``(features=H, context_features=C)``
``prior.conditioner``  ``TimeConditioner``   ``(in_features=H, position_features=P)``
``prior``              ``SequencePrior``     ``(max_length=T_max)``
``model.encoder``      ``SequenceEncoder``   ``(num_features, max_length, text, latent_dim)``
``model.decoder``      ``SequenceDecoder``   ``(num_features, max_length, text, latent_dim,
                                             encoder)``
``model``              ``SequenceModel``     ``(num_features, max_length, text,
                                             length_distribution[, prior])``
``optimizer``          (torch optimizer)     ``(params)``
``lr_schedule``        ``ValidationLRSchedule`` or a torch LR scheduler: ``(optimizer)``
``data``               ``DataModule``        nothing: the node's keys only
=====================  ====================  =================================================

Size presets (``scale=cpu``, ``debug=tiny``) set conventional argument names: ``latent_dim`` of
the prior, ``num_layers`` and ``hidden_features`` of ``prior.flow``; the conditioner reads the
model's ``hidden_dim`` and ``num_layers`` through interpolation. A part of your own that takes
these names is resized by the presets like ours; one that does not is refused with a one-line
error naming the key when a preset applies (write your own preset, or take the names).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from torch import Tensor


@runtime_checkable
class ScalarTransform(Protocol):
    """An elementwise monotone bijection given its parameters ``params[..., num_params]``
    (already computed by a network: the transform itself is stateless, as in zuko)."""

    num_params: int

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        """``(y, log |dy/dx|)``, both shaped like ``x``: the density direction."""
        ...

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        """``(x, log |dx/dy|)``: differentiable in ``y`` and ``params``."""
        ...

    def solve(self, y: Tensor, params: Tensor) -> Tensor:
        """The ``x`` with ``forward(x, params)[0] == y``; no log-det, no autograd (sampling)."""
        ...


@runtime_checkable
class HiddenFlow(Protocol):
    """A flow over one step's vector z_t in R^H, conditioned on a context c_t in R^C."""

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``[..., H], [..., C] -> (eps [..., H], logabsdet [...])``."""
        ...

    def inverse(self, u: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``eps -> (z, log |dz/d eps|)``, differentiable."""
        ...

    def sample(self, u: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``inverse`` without autograd (the sampling path)."""
        ...


@runtime_checkable
class TimeConditioner(Protocol):
    """The time-wise context c_t = net(v_{<t}, position(t)) of a prior's hidden flow.

    ``v`` is z for AF in time and eps for IAF in time; c_t must not depend on v_t or later.
    ``state`` is whatever the conditioner carries between steps (LSTM state, a KV cache).
    """

    out_features: int

    def parallel(self, v: Tensor, position: Tensor) -> Tensor:
        """All steps at once (teacher-forced): ``[B, T, H], [B, T, P] -> [B, T, C]``."""
        ...

    def step(self, v_prev: Tensor | None, position_t: Tensor, state: Any) -> tuple[Tensor, Any]:
        """One step: ``v_{t-1} [B, H]`` (None at t = 0), ``position(t) [B, P]`` ->
        ``(c_t [B, C], state)``; ``state=None`` starts a sequence."""
        ...


@runtime_checkable
class SequencePrior(Protocol):
    """p(z_{1:T} | T) over latent sequences z in R^{T x H}; padding (t >= T_b) never counts."""

    latent_dim: int

    def log_prob(self, z: Tensor, lengths: Tensor) -> Tensor:
        """``[B, T, H], [B] -> [B]``."""
        ...

    def sample(
        self, lengths: Tensor, temperature: float = 1.0, generator: Any = None
    ) -> tuple[Tensor, Tensor]:
        """``[B] -> (z [B, T, H] zero in the padding, log p(z | T) [B])``."""
        ...


@runtime_checkable
class SequenceEncoder(Protocol):
    """q(z_{1:T} | x, T) = prod_t N(z_t; mu_t, diag exp(logvar_t)): the mean-field posterior of
    the latent flow model (a BiLSTM in the 2019 paper, a per-token codebook in TarFlowLM)."""

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """``x [B, T]`` ids or ``[B, T, 88]`` rolls, ``lengths [B]`` -> ``(mu, logvar)``, each
        ``[B, T, H]``; padded steps may hold anything (the model masks them)."""
        ...


@runtime_checkable
class SequenceDecoder(Protocol):
    """p(x_t | z_{1:T}, T): emission logits per step (Categorical for text, 88 Bernoullis for
    music). Built with the encoder, so it may share its parameters (tied weights, a codebook)."""

    def forward(self, z: Tensor, lengths: Tensor) -> Tensor:
        """``z [B, T, H]``, ``lengths [B]`` -> logits ``[B, T, V | 88]``; a padded z_t must not
        change a valid step's logits."""
        ...


@runtime_checkable
class SequenceModel(Protocol):
    """A model of discrete sequences given their length: the flow VAE, the LSTM baseline."""

    length_distribution: Any  # p(T): log_prob(lengths), sample(n, generator)

    def training_terms(
        self, x: Tensor, lengths: Tensor, num_samples: int, kl_weight: float
    ) -> dict[str, Tensor]:
        """Per-sequence ``recon``, ``kl``, ``elbo`` and ``objective`` (maximised), each [B]."""
        ...

    def evaluate(
        self, x: Tensor, lengths: Tensor, num_samples: int, chunk_size: int
    ) -> dict[str, Tensor]:
        """Per-sequence ``log_px``, ``stderr``, ``recon``, ``kl`` (importance sampled)."""
        ...

    def sample(
        self,
        lengths: Tensor | None = None,
        num_samples: int | None = None,
        temperature: float = 1.0,
        argmax: bool = False,
        generator: Any = None,
    ) -> dict[str, Tensor]:
        """``{"x", "lengths", ...}``: ``x`` [B, T] ids or [B, T, 88] rolls, zero padded."""
        ...


@runtime_checkable
class ValidationLRSchedule(Protocol):
    """A learning-rate schedule driven by validation (e.g. ``PlateauLRDecay``); a torch
    ``LRScheduler`` is the other kind ``lr_schedule`` accepts (stepped once per epoch)."""

    monitor: str

    def on_validation(self, value: float, epoch: int, global_step: int) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@runtime_checkable
class DataModule(Protocol):
    """A Lightning-style datamodule. After ``setup()``: ``kind`` ("text" | "music"), ``vocab``
    (a ``CharVocab``-like object with ``symbols``, or None), ``num_features`` (V or 88),
    ``max_length`` and ``length_distribution`` (p(T)). Batches are dicts with ``x``,
    ``lengths``, ``mask`` and ``index`` (``latentflow.data.batching``)."""

    kind: str

    def prepare_data(self) -> None: ...

    def setup(self, stage: str | None = None) -> None: ...

    def train_dataloader(self) -> Any: ...

    def val_dataloader(self) -> Any: ...

    def test_dataloader(self) -> Any: ...


# Which protocol the object built at each config key must meet (checked at start-up).
ROLES: dict[str, type] = {
    "model": SequenceModel,
    "prior": SequencePrior,
    "model.encoder": SequenceEncoder,
    "model.decoder": SequenceDecoder,
    "prior.flow": HiddenFlow,
    "prior.conditioner": TimeConditioner,
    "prior.flow.transform": ScalarTransform,
    "data": DataModule,
}


def missing_members(obj: Any, protocol: type) -> list[str]:
    """The members of ``protocol`` that ``obj`` lacks (empty when it fits)."""
    names = set(getattr(protocol, "__annotations__", {}))
    names |= {n for n, v in vars(protocol).items() if callable(v) and not n.startswith("_")}
    return sorted(n for n in names if not hasattr(obj, n))
