"""Priors p(z_{1:T} | T): brute-force Jacobians over the whole sequence, structure, gradients."""

from __future__ import annotations

import pytest
import torch

from latentflow import recipes
from latentflow.flows import standard_normal_log_prob
from latentflow.models.position import sequence_mask

from .helpers import VARIANTS, perturbed_prior
from .helpers import make_prior as build_recipe_prior

PRIORS = VARIANTS  # every prior of Tables 1-2, with splines and attention where they apply

T, H, MAXLEN = 4, 3, 8


def sized_prior(name: str, seed: int = 0):
    """``VARIANTS[name]``'s prior at this file's sizes (``helpers.perturbed_prior``)."""
    return perturbed_prior(name, MAXLEN, H, seed)


def two_sided(name: str) -> bool:
    """A prior whose stacked blocks alternate the time direction (TarFlowLM's)."""
    return VARIANTS[name][0] in recipes.SUCCESSORS


def flat_eps(prior, lengths):
    def fn(zf):
        eps, _ = prior.eps_and_logdet(zf.view(1, T, H), lengths)
        return eps.reshape(-1)

    return fn


@pytest.mark.parametrize("name", PRIORS)
def test_log_prob_equals_bruteforce_jacobian(name, float64):
    prior = sized_prior(name)
    lengths = torch.tensor([T])
    z = torch.randn(1, T, H)
    jac = torch.autograd.functional.jacobian(flat_eps(prior, lengths), z.reshape(-1))  # [TH, TH]
    eps = flat_eps(prior, lengths)(z.reshape(-1))
    expected = standard_normal_log_prob(eps) + torch.linalg.slogdet(jac)[1]
    torch.testing.assert_close(prior.log_prob(z, lengths)[0], expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", PRIORS)
def test_time_jacobian_structure(name, float64):
    prior = sized_prior(name)
    lengths = torch.tensor([T])
    jac = sum(
        torch.autograd.functional.jacobian(flat_eps(prior, lengths), torch.randn(T * H)).abs()
        for _ in range(3)
    ).view(T, H, T, H)  # [t, i, s, j] = d eps_{t,i} / d z_{s,j}
    for t in range(T):
        for s in range(T):
            block = jac[t, :, s, :]
            if two_sided(name):  # blocks in both time directions: every step sees every other
                assert block.max() > 0, f"eps_{t} ignores z_{s}"
            elif s > t:
                assert block.max() == 0, f"eps_{t} depends on future z_{s}"
            elif s < t:
                if name.startswith("af_only"):
                    assert block.max() == 0, "AF-only prior must have no cross-time terms"
                else:
                    assert block.max() > 0, f"eps_{t} ignores z_{s}: no time dynamics"


@pytest.mark.parametrize("name", PRIORS)
def test_sample_then_log_prob_recovers_eps(name, float64):
    prior = sized_prior(name)
    lengths = torch.tensor([T, 2, 3])
    z, log_p = prior.sample(lengths, generator=torch.Generator().manual_seed(3))
    eps_drawn = prior._draw_eps(lengths, 1.0, torch.Generator().manual_seed(3))
    eps, _ = prior.eps_and_logdet(z, lengths)
    mask = sequence_mask(lengths)[..., None]
    torch.testing.assert_close(eps * mask, eps_drawn * mask, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(prior.log_prob(z, lengths), log_p, rtol=1e-8, atol=1e-8)
    assert (z[1, 2:] == 0).all() and (z[2, 3:] == 0).all()  # padding is zero


@pytest.mark.parametrize("name", PRIORS)
def test_gradients_match_finite_differences(name, float64):
    """Directional derivative of log p(z) in a random direction over z and every parameter.

    This is the check that catches a coupling layer that detaches its pass-through half."""
    prior = sized_prior(name)
    lengths = torch.tensor([T, 3])
    z = torch.randn(2, T, H, requires_grad=True)
    params = [z, *prior.parameters()]
    dirs = [torch.randn_like(p) for p in params]
    prior.log_prob(z, lengths).sum().backward()
    autograd = sum((p.grad * d).sum() for p, d in zip(params, dirs, strict=True))

    h = 1e-6

    def value(sign: float) -> float:
        with torch.no_grad():
            for p, d in zip(params, dirs, strict=True):
                p.add_(sign * h * d)
            v = prior.log_prob(z, lengths).sum().item()
            for p, d in zip(params, dirs, strict=True):
                p.sub_(sign * h * d)
            return v

    fd = (value(1.0) - value(-1.0)) / (2 * h)
    assert abs(autograd.item() - fd) <= 1e-5 * max(1.0, abs(fd)), (autograd.item(), fd)


@pytest.mark.parametrize("name", PRIORS)
def test_padding_never_leaks(name, float64):
    prior = sized_prior(name)
    lengths = torch.tensor([2, T])
    z = torch.randn(2, T, H)
    garbage = z.clone()
    garbage[0, 2:] = 1e3 * torch.randn(T - 2, H)  # padded steps of sequence 0
    torch.testing.assert_close(prior.log_prob(z, lengths), prior.log_prob(garbage, lengths))
    # Extra padded columns change nothing either, and a sequence alone equals it in a batch.
    wider = torch.cat([z, torch.randn(2, 3, H)], 1)
    torch.testing.assert_close(prior.log_prob(wider, lengths), prior.log_prob(z, lengths))
    alone = prior.log_prob(z[:1, :2], lengths[:1])
    torch.testing.assert_close(alone, prior.log_prob(z, lengths)[:1])


def test_coupling_prior_needs_two_latent_dims():
    with pytest.raises(ValueError, match="must be >= 2"):
        build_recipe_prior("iaf_scf", MAXLEN, latent_dim=1)
