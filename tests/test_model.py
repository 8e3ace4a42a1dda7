"""The latent flow VAE, the LSTM baseline, the IS estimator and the metric conventions."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from latentflow.models import (
    LatentFlowModel,
    LSTMLanguageModel,
    importance_sampled_log_likelihood,
    nll_metrics,
)

from .helpers import make_prior

V, MAXLEN, H = 7, 10, 3


PRIOR_NAMES = {("af", "af"): "af_af", ("iaf", "scf"): "iaf_scf", ("none", "af"): "af_only"}
SIZES = dict(embed_dim=8, hidden_dim=8, num_layers=1, pos_dim=2, tie_weights=True)


def tiny_flow_model(text: bool = True, time_flow: str = "af", hidden: str = "af"):
    """A recipe's prior (test sizes) injected into the VAE as a module."""
    name = PRIOR_NAMES[time_flow, hidden]
    prior = make_prior(name, MAXLEN, latent_dim=H, pos_dim=2, conditioner_hidden=8,
                       conditioner_layers=1)  # fmt: skip
    nf = V if text else 88
    return LatentFlowModel(prior, nf, MAXLEN, text, **SIZES).double().eval()


def text_batch():
    torch.manual_seed(1)
    lengths = torch.tensor([6, 3, 1])
    x = torch.randint(2, V, (3, 6))
    x[1, 3:] = 0
    x[2, 1:] = 0
    return x, lengths


# ----------------------------------------------------------------- IS estimator, known answers


def linear_gaussian_log_weights(x, q_mean, q_std, sigma=0.5):
    """p(z) = N(0, 1), p(x | z) = N(z, sigma^2); proposal N(q_mean, q_std^2). Exact:
    log p(x) = log N(x; 0, 1 + sigma^2)."""

    def log_normal(v, m, s):
        return -0.5 * ((v - m) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)

    def fn(n):
        z = q_mean + q_std * torch.randn(n, x.shape[0], dtype=torch.float64)
        return log_normal(x, z, sigma) + log_normal(z, 0.0, 1.0) - log_normal(z, q_mean, q_std)

    exact = log_normal(x, 0.0, math.sqrt(1 + sigma**2))
    return fn, exact


def test_is_equals_exact_with_the_true_posterior():
    x = torch.tensor([-2.0, 0.1, 1.5], dtype=torch.float64)
    s2 = 0.25
    post_var = s2 / (1 + s2)
    fn, exact = linear_gaussian_log_weights(x, x / (1 + s2), math.sqrt(post_var))
    est, se = importance_sampled_log_likelihood(fn, num_samples=7, chunk_size=3)
    torch.testing.assert_close(est, exact, rtol=1e-12, atol=1e-12)
    assert se.abs().max() < 1e-10


def test_is_converges_tightens_and_bounds_the_elbo():
    torch.manual_seed(0)
    x = torch.tensor([0.8, -1.2], dtype=torch.float64)
    fn, exact = linear_gaussian_log_weights(x, torch.zeros(2, dtype=torch.float64), 1.0)
    lw = fn(40000)
    elbo, elbo_se = lw.mean(0), lw.std(0) / 200  # E_q log w, and its standard error
    means = []
    for S in (1, 5, 50):
        reps = torch.stack([importance_sampled_log_likelihood(fn, S, 16)[0] for _ in range(2000)])
        means.append(reps.mean(0))
    # S = 1 is the ELBO in expectation
    assert ((means[0] - elbo).abs() < 4 * (elbo_se + lw.std(0) / 2000**0.5)).all()
    assert (means[1] > means[0]).all() and (means[2] > means[1]).all()  # tightens with S
    assert (means[2] <= exact + 0.02).all()  # a lower bound in expectation
    est, se = importance_sampled_log_likelihood(fn, 20000, 5000)
    assert ((est - exact).abs() < 4 * se + 1e-3).all()  # converges, stderr is honest


def test_is_rejects_bad_sample_counts():
    with pytest.raises(ValueError, match="num_samples"):
        importance_sampled_log_likelihood(lambda n: torch.zeros(n, 1), 0, 1)


# ----------------------------------------------------------------- the flow model


def test_elbo_terms_and_is_bound_on_the_model():
    model = tiny_flow_model()
    x, lengths = text_batch()
    torch.manual_seed(2)
    out = model.elbo(x, lengths, num_samples=200, kl_weight=0.3)
    torch.testing.assert_close(out["elbo"], out["recon"] - out["kl"])
    torch.testing.assert_close(out["objective"], out["recon"] - 0.3 * out["kl"])
    is_est, se = model.log_likelihood(x, lengths, num_samples=200, chunk_size=64)
    assert (is_est >= out["elbo"].detach() - 3 * se).all()
    assert torch.isfinite(se).all() and (se > 0).all()


@pytest.mark.parametrize("time_flow,hidden", [("af", "af"), ("iaf", "scf"), ("none", "af")])
@pytest.mark.parametrize("text", [True, False])
def test_model_padding_invariance(text, time_flow, hidden):
    model = tiny_flow_model(text, time_flow, hidden)
    lengths = torch.tensor([5, 2])
    x = torch.randint(2, V, (2, 5)) if text else (torch.rand(2, 5, 88) < 0.1).double()
    x_pad = torch.cat([x, x[:, :3] * 0 + (1 if text else 0.0)], 1)  # 3 extra padded steps
    mu, logvar = model.encode(x, lengths)
    mu2, logvar2 = model.encode(x_pad, lengths)
    (
        torch.testing.assert_close(mu2[0, :5], mu[0]),
        torch.testing.assert_close(mu2[1, :2], mu[1, :2]),
    )
    torch.testing.assert_close(logvar2[1, :2], logvar[1, :2])
    torch.manual_seed(5)
    a = model._joint_terms(x, lengths, mu, logvar, 2)
    torch.manual_seed(5)
    noise_shape_same = model._joint_terms(x, lengths, mu, logvar, 2)
    for u, v in zip(a, noise_shape_same, strict=True):
        torch.testing.assert_close(u, v)
    # Decoder and prior see padded z too: garbage in padding changes no valid term.
    z = torch.randn(2, 5, H, dtype=torch.float64)
    z_garbage = z.clone()
    z_garbage[1, 2:] = 50.0
    torch.testing.assert_close(
        model.decode(z_garbage, lengths)[1, :2], model.decode(z, lengths)[1, :2]
    )
    torch.testing.assert_close(
        model.prior.log_prob(z_garbage, lengths), model.prior.log_prob(z, lengths)
    )


def test_weight_tying_for_text():
    model = tiny_flow_model()
    assert model.out.weight is model.embed.weight


def test_model_sampling_shapes_and_seed():
    model = tiny_flow_model()
    s1 = model.sample(lengths=torch.tensor([4, 2]), generator=torch.Generator().manual_seed(0))
    s2 = model.sample(lengths=torch.tensor([4, 2]), generator=torch.Generator().manual_seed(0))
    assert s1["x"].shape == (2, 4) and (s1["x"][1, 2:] == 0).all() and (s1["x"][:, :2] > 0).all()
    assert torch.equal(s1["x"], s2["x"]) and torch.equal(s1["z"], s2["z"])
    torch.testing.assert_close(model.prior.log_prob(s1["z"], s1["lengths"]), s1["log_pz"])
    with pytest.raises(ValueError, match="length distribution"):
        model.sample(num_samples=3)


# ----------------------------------------------------------------- the LSTM baseline


def test_baseline_is_normalised_over_all_sequences():
    """sum over every x in V^T of p(x | T) = 1 (a known answer by enumeration)."""
    torch.manual_seed(0)
    model = (
        LSTMLanguageModel(
            3,
            5,
            True,
            embed_dim=4,
            hidden_dim=6,
            num_layers=2,
            dropout=0.0,
            pos_dim=2,
            tie_weights=True,
        )
        .double()
        .eval()
    )
    T = 3
    xs = torch.tensor(list(itertools.product(range(3), repeat=T)))
    lp = model.log_prob(xs, torch.full((len(xs),), T))
    torch.testing.assert_close(lp.exp().sum(), torch.tensor(1.0, dtype=torch.float64))


def test_baseline_music_padding_and_sampling():
    torch.manual_seed(0)
    model = (
        LSTMLanguageModel(
            88,
            8,
            False,
            embed_dim=6,
            hidden_dim=6,
            num_layers=2,
            dropout=0.0,
            pos_dim=2,
            tie_weights=True,
        )
        .double()
        .eval()
    )
    x = (torch.rand(2, 5, 88) < 0.1).double()
    lengths = torch.tensor([5, 3])
    x_garbage = x.clone()
    x_garbage[1, 3:] = 1.0
    torch.testing.assert_close(model.log_prob(x, lengths), model.log_prob(x_garbage, lengths))
    out = model.sample(lengths=lengths, generator=torch.Generator().manual_seed(1))
    assert out["x"].shape == (2, 5, 88) and (out["x"][1, 3:] == 0).all()


# ----------------------------------------------------------------- metric conventions


def test_metric_conventions():
    m = nll_metrics(
        log_px=-100.0, log_pT=-10.0, num_tokens=50, num_sequences=5, text=True, log_px_var=4.0
    )
    assert m["nll_paper_bpc"] == pytest.approx(110 / 55 / math.log(2))
    assert m["nll_cond_bpc"] == pytest.approx(100 / 50 / math.log(2))
    assert m["nll_cond_bpc_stderr"] == pytest.approx(2 / 50 / math.log(2))
    m = nll_metrics(-100.0, -10.0, 50, 5, text=False)
    assert m["nll_paper_nats"] == pytest.approx(2.0) and m["nll_cond_nats"] == pytest.approx(2.0)
