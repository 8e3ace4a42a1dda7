"""Encoders and decoders as parts: TarFlowLM's codebook encoder and its tied decoder (the Bayes
posterior of the codebook), music's analogue, the 2019 BiLSTMs under their old names, and the
configs that choose them."""

from __future__ import annotations

import math

import pytest
import torch

from latentflow.components import ComponentError, instantiate
from latentflow.models import (
    BiLSTMDecoder,
    BiLSTMEncoder,
    CodebookEncoder,
    TiedCodebookDecoder,
)
from latentflow.models.codebook import LOG_SIGMA_MIN

from .helpers import compose_config, make_net

V, H = 7, 3


def text_parts(seed: int = 0) -> tuple[CodebookEncoder, TiedCodebookDecoder]:
    torch.manual_seed(seed)
    enc = CodebookEncoder(V, 10, True, H, init_scale=0.5)
    dec = TiedCodebookDecoder(V, 10, True, H, enc, hidden_features=4)
    with torch.no_grad():
        enc.log_sigma.weight.uniform_(-1.0, 0.5)
        dec.log_pi.normal_()
    return enc.double(), dec.double()


def test_the_encoder_is_a_gaussian_per_symbol(float64):
    enc, _ = text_parts()
    x = torch.tensor([[1, 4, 4, 0]])
    mu, logvar = enc(x, torch.tensor([3]))
    torch.testing.assert_close(mu[0, 1], mu[0, 2])  # the same symbol, the same q
    torch.testing.assert_close(mu[0], enc.mu.weight[x[0]])
    torch.testing.assert_close(logvar[0], 2 * enc.log_sigma.weight[x[0]])
    with torch.no_grad():
        enc.log_sigma.weight[4] = -50.0  # clamped: sigma never collapses to 0
    assert enc(x, torch.tensor([3]))[1].min() == 2 * LOG_SIGMA_MIN


def test_the_tied_decoder_is_the_bayes_posterior_of_the_codebook(float64):
    """softmax(logits) = pi_k N(z; mu_k, sigma_k^2) / sum_j pi_j N(z; mu_j, sigma_j^2), from the
    densities themselves (no expanded quadratic form), and sums to 1."""
    enc, dec = text_parts()
    z = 2 * torch.randn(2, 5, H)
    probs = dec(z, torch.tensor([5, 3])).softmax(-1)  # [2, 5, V]
    mu, log_sigma = enc.mu.weight, enc.log_sigma.weight
    normal = torch.distributions.Normal(mu, log_sigma.exp())  # [V, H]
    joint = dec.log_pi.log_softmax(0) + normal.log_prob(z[..., None, :]).sum(-1)  # [2, 5, V]
    torch.testing.assert_close(probs, joint.softmax(-1), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 5))
    torch.testing.assert_close(  # the logits are the log-posteriors themselves
        dec(z, torch.tensor([5, 3])), joint.log_softmax(-1), rtol=1e-10, atol=1e-10
    )


def test_the_tied_decoder_is_exact_in_float32_at_the_sigma_floor():
    """A float32 model at PTB's size, every sigma at its floor (0.018) and means of size ~3,
    z between two entries: the log-posteriors equal the float64 densities' to 1e-4 nats (the
    expanded quadratic form in float32 was 0.5 nats off, its float32 log-numerators 0.1)."""
    torch.manual_seed(0)
    V51, H50 = 51, 50
    enc = CodebookEncoder(V51, 10, True, H50, init_scale=math.exp(LOG_SIGMA_MIN))
    dec = TiedCodebookDecoder(V51, 10, True, H50, enc, hidden_features=4)
    with torch.no_grad():
        enc.mu.weight.normal_(0.0, 3.0)
    mu = enc.mu.weight.detach()
    z = (0.5 * (mu[0] + mu[1]) + 1e-5 * torch.randn(4, H50)).view(1, 4, H50)  # float32
    got = dec(z, torch.tensor([4])).log_softmax(-1)
    assert got.dtype == torch.float32
    sigma = torch.full_like(mu, math.exp(LOG_SIGMA_MIN)).double()
    normal = torch.distributions.Normal(mu.double(), sigma)
    want = normal.log_prob(z.double()[..., None, :]).sum(-1).log_softmax(-1)
    assert (want.exp()[..., :2].sum(-1) > 0.99).all() and (want[..., :2] < -0.01).any()  # both
    torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-4)


def test_the_decoder_reads_the_encoders_parameters(float64):
    """Tied: the decoder owns only the class weights; its loss moves the codebook."""
    enc, dec = text_parts()
    assert [n for n, _ in dec.named_parameters()] == ["log_pi"]
    z = torch.randn(1, 4, H)
    dec(z, torch.tensor([4])).log_softmax(-1)[..., 2].sum().backward()
    assert enc.mu.weight.grad.abs().sum() > 0 and enc.log_sigma.weight.grad.abs().sum() > 0


def test_music_analogue_is_linear_in_the_keys_and_per_step(float64):
    torch.manual_seed(1)
    enc = CodebookEncoder(88, 10, False, H).double()
    with torch.no_grad():
        enc.log_sigma.weight.normal_(0, 0.1)
    a, b = (torch.rand(2, 88) < 0.1).double()
    mu = enc(torch.stack([a, b, a + b])[None], torch.tensor([3]))[0][0]
    bias = enc.mu.bias
    torch.testing.assert_close(mu[2] - bias, (mu[0] - bias) + (mu[1] - bias))  # a chord's sum
    dec = TiedCodebookDecoder(88, 10, False, H, enc, hidden_features=5).double()
    z = torch.randn(1, 4, H)
    jac = torch.autograd.functional.jacobian(lambda v: dec(v, torch.tensor([4])), z)[0]
    dep = jac.abs().sum((1, 2, 4))  # [t, s]
    assert (dep > 0).equal(torch.eye(4, dtype=torch.bool))  # logits_t from z_t alone


def test_wrong_pairings_are_one_line_errors():
    enc = CodebookEncoder(V, 10, True, H)
    with pytest.raises(ValueError, match="model.decoder.tie_weights=false"):
        BiLSTMDecoder(V, 10, True, H, enc, embed_dim=4, hidden_dim=4, num_layers=1, pos_dim=2,
                      tie_weights=True)  # fmt: skip
    bilstm = make_net("af_af", text=True)
    with pytest.raises(ValueError, match="encoder=codebook"):
        TiedCodebookDecoder(V, 10, True, H, bilstm.parts.encoder, hidden_features=4)
    with pytest.raises(ValueError, match="init_scale"):
        CodebookEncoder(V, 10, True, H, init_scale=0.0)


def test_the_default_parts_keep_the_2019_state_names():
    """The BiLSTM encoder and decoder register their layers on the model under the names of
    checkpoints written before they were parts (the recipes' golden test checks every row)."""
    net = make_net("af_af", text=True)
    names = [n.split(".")[0] for n, _ in net.named_parameters() if not n.startswith("prior")]
    assert list(dict.fromkeys(names)) == [
        "embed", "enc_pos", "encoder", "to_q", "dec_pos", "decoder", "to_features", "out"
    ]  # fmt: skip
    assert net.out.weight is net.embed.weight
    net.eval()
    assert not net.parts.encoder.training and not net.parts.decoder.training


def test_bilstm_dropout_acts_in_training_only():
    """``dropout`` (0 by default, as the paper): training outputs vary with it, evaluation
    outputs equal those of the same weights without it; a value outside [0, 1) is refused."""
    sizes = {"embed_dim": 6, "hidden_dim": 5, "num_layers": 2, "pos_dim": 2}
    x, lengths = torch.randint(0, V, (3, 8)), torch.tensor([8, 5, 2])
    z = torch.randn(3, 8, H)
    for p in (0.0, 0.5):
        torch.manual_seed(0)
        enc = BiLSTMEncoder(V, 10, True, H, **sizes, dropout=p)
        dec = BiLSTMDecoder(V, 10, True, H, enc, **sizes, tie_weights=True, dropout=p)
        if p == 0.0:
            plain = (enc.eval()(x, lengths)[0], dec.eval()(z, lengths))
            continue
        enc.train(), dec.train()
        assert not torch.equal(enc(x, lengths)[0], enc(x, lengths)[0])
        assert not torch.equal(dec(z, lengths), dec(z, lengths))
        enc.eval(), dec.eval()
        torch.testing.assert_close(enc(x, lengths)[0], plain[0], rtol=0, atol=0)
        torch.testing.assert_close(dec(z, lengths), plain[1], rtol=0, atol=0)
        assert enc.encoder.dropout == dec.decoder.dropout == p  # between the LSTM layers too
    # Lightning restores modes flag by flag after a validation (never calling train()): the
    # parts read the flag of their registered LSTM, so dropout is back on in training.
    net = make_net("af_af", text=True)
    net.parts.encoder.dropout = net.parts.decoder.dropout = 0.5
    for module in net.modules():
        module.training = False
    for module in net.modules():
        module.training = True
    x, lengths = torch.randint(1, net.embed.num_embeddings, (2, 6)), torch.tensor([6, 6])
    assert not torch.equal(net.encode(x, lengths)[0], net.encode(x, lengths)[0])
    z = torch.randn(2, 6, net.latent_dim)
    assert not torch.equal(net.decode(z, lengths), net.decode(z, lengths))
    with pytest.raises(ValueError, match="dropout must lie in"):
        BiLSTMEncoder(V, 10, True, H, **sizes, dropout=1.0)


@pytest.mark.parametrize("text", [True, False])
def test_a_tarflowlm_model_trains_and_samples(text):
    """The codebook parts through the real configs (prior=tarflowlm): a finite ELBO whose
    gradient reaches the codebook, and samples of the right kind."""
    net = make_net("tarflowlm", text=text)
    assert type(net.parts.encoder).__name__ == "CodebookEncoder"
    lengths = torch.tensor([5, 3])
    x = torch.randint(1, 7, (2, 5)) if text else (torch.rand(2, 5, 88) < 0.1).float()
    out = net.elbo(x, lengths, num_samples=2)
    assert torch.isfinite(out["elbo"]).all()
    (-out["objective"].sum()).backward()
    assert net.parts.encoder.mu.weight.grad.abs().sum() > 0
    s = net.eval().sample(lengths=lengths, generator=torch.Generator().manual_seed(0))
    assert s["x"].shape == ((2, 5) if text else (2, 5, 88))


def test_configs_choose_encoder_and_decoder(tmp_path):
    cfg = compose_config("train", ["prior=af_af", "encoder=codebook", "decoder=bilstm",
                                   "model.decoder.tie_weights=false"], tmp_path)  # fmt: skip
    assert cfg.model.encoder._target_.endswith("CodebookEncoder")
    cfg = compose_config("train", ["prior=tarflowlm"], tmp_path)
    assert cfg.model.decoder._target_.endswith("TiedCodebookDecoder")
    assert cfg.prior.flow.transform._target_.endswith("MixtureLogisticCDF")
    cfg = compose_config("train", ["model=lstm"], tmp_path)
    assert "encoder" not in cfg.model and "decoder" not in cfg.model
    node = {"_target_": "latentflow.models.TiedCodebookDecoder", "hidden_features": 4}
    make = instantiate(node, "model.decoder")
    with pytest.raises(ComponentError, match="model.decoder"):
        make(num_features=V, max_length=10, text=True, latent_dim=H, encoder=torch.nn.Linear(1, 1))
    assert math.isfinite(LOG_SIGMA_MIN)
