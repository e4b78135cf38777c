"""WAE, SWAE, AAE, (c)VAE, VQ-VAE: their loss terms and mechanics."""

from __future__ import annotations

import numpy as np
import ot
import pytest
import torch

from baler_ext.config import ModelConfig, TrainingConfig
from baler_ext.losses import gaussian_kl, mmd_imq, sliced_wasserstein
from baler_ext.models import build_model
from baler_ext.training import fit

COLUMNS = ["eta", "pt", "phi", "mass", "energy"]


def brute_mmd(a: np.ndarray, b: np.ndarray, var: float, scales) -> float:
    n, d = a.shape
    total = 0.0
    for s in scales:
        c = 2 * d * var * s

        def k(u, v, c=c):
            return c / (c + np.sum((u - v) ** 2))

        total += sum(k(a[i], a[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
        total += sum(k(b[i], b[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
        total -= 2 * sum(k(a[i], b[j]) for i in range(n) for j in range(n)) / n**2
    return total


def test_mmd_matches_the_unbiased_estimator() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(12, 3)), rng.normal(1.0, 1.0, size=(12, 3))
    got = mmd_imq(torch.as_tensor(a), torch.as_tensor(b), 1.0, [0.5, 1.0, 2.0])
    assert got.dtype == torch.float64
    assert float(got) == pytest.approx(brute_mmd(a, b, 1.0, [0.5, 1.0, 2.0]), rel=1e-12)


def test_mmd_is_unbiased_and_separates() -> None:
    torch.manual_seed(0)
    same = [
        float(
            mmd_imq(
                torch.randn(64, 4, dtype=torch.float64), torch.randn(64, 4, dtype=torch.float64)
            )
        )
        for _ in range(50)
    ]
    diff = float(
        mmd_imq(
            torch.randn(64, 4, dtype=torch.float64) + 1.0, torch.randn(64, 4, dtype=torch.float64)
        )
    )
    assert abs(np.mean(same)) < 3 * np.std(same) / np.sqrt(50)  # zero mean: unbiased
    assert min(same) < 0 < diff and diff > 10 * np.std(same)


def test_sliced_wasserstein_is_pots_distance_to_the_power_p() -> None:
    torch.manual_seed(0)
    z = torch.randn(100, 3, dtype=torch.float64, requires_grad=True)
    prior = torch.randn(100, 3, dtype=torch.float64) + 2.0
    torch.manual_seed(5)
    sw2 = sliced_wasserstein(z, prior, n_projections=20, p=2)
    torch.manual_seed(5)
    theta = torch.randn(3, 20, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    ref = ot.sliced_wasserstein_distance(z.detach(), prior, projections=theta, p=2)
    assert sw2.dtype == torch.float64
    assert float(sw2.detach()) == pytest.approx(float(ref) ** 2, rel=1e-12)
    sw2.backward()
    assert z.grad is not None and z.grad.dtype == torch.float64 and z.grad.abs().sum() > 0


def test_sliced_wasserstein_in_one_dimension_is_w2() -> None:
    a, b = torch.randn(50, 1, dtype=torch.float64), torch.randn(50, 1, dtype=torch.float64) * 2
    w2sq = torch.mean((torch.sort(a[:, 0]).values - torch.sort(b[:, 0]).values) ** 2)
    assert float(sliced_wasserstein(a, b, n_projections=3)) == pytest.approx(float(w2sq))


def test_gaussian_kl_matches_torch_distributions() -> None:
    mu, logvar = torch.randn(10, 4, dtype=torch.float64), torch.randn(10, 4, dtype=torch.float64)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    ref = torch.distributions.kl_divergence(q, p).sum(1).mean()
    assert float(gaussian_kl(mu, logvar)) == pytest.approx(float(ref), rel=1e-12)
    assert float(gaussian_kl(torch.zeros(3, 2), torch.zeros(3, 2))) == 0.0


@pytest.mark.parametrize(
    ("name", "term"), [("wae", "mmd"), ("swae", "sw"), ("vae", "kl"), ("aae", "adversarial")]
)
def test_regulariser_weight_scales_the_term(name: str, term: str) -> None:
    key = "beta" if name == "vae" else "weight"
    x = torch.randn(64, 5, dtype=torch.float64)
    values = []
    for w in (1.0, 3.0):
        torch.manual_seed(0)
        model = build_model(ModelConfig(name=name, latent_dim=2, hidden=[8], options={key: w}), 5)
        model.eval()
        torch.manual_seed(1)
        with torch.no_grad():
            values.append(float(model.regularisers(x, model(x))[term]))
    assert values[1] == pytest.approx(3 * values[0], rel=1e-10)


def test_swae_uniform_prior_and_options() -> None:
    model = build_model(
        ModelConfig(
            name="swae", latent_dim=3, hidden=[8], options={"prior": "uniform", "n_projections": 7}
        ),
        5,
    )
    assert model.options.n_projections == 7
    x = torch.randn(32, 5, dtype=torch.float64)
    assert model.regularisers(x, model(x))["sw"].dtype == torch.float64
    with pytest.raises(Exception, match="prior"):
        build_model(ModelConfig(name="swae", options={"prior": "cauchy"}), 5)


def test_vae_samples_in_training_and_uses_the_mean_in_eval() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="vae", latent_dim=3, hidden=[8]), 5)
    x = torch.randn(16, 5, dtype=torch.float64)
    model.train()
    a, b = model(x), model(x)
    assert not torch.equal(a["x_hat"], b["x_hat"])
    assert torch.equal(a["z"], model.posterior(x)[0])
    model.eval()
    out = model(x)
    assert torch.equal(out["z_sample"], out["mu"]) and torch.equal(model.encode(x), out["mu"])


def test_cvae_conditions_are_seen_and_restored_exactly() -> None:
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(name="cvae", latent_dim=2, hidden=[8], options={"conditions": ["pt", "mass"]}),
        5,
        columns=COLUMNS,
    )
    assert model.lossless_columns == ["pt", "mass"]
    assert model.latent_dim == 4 and model.lossless_latent_dims == [2, 3]
    x = torch.randn(16, 5, dtype=torch.float64)
    model.eval()
    z = model.encode(x)
    assert torch.equal(z[:, 2:], x[:, [1, 3]])
    x_hat = model(x)["x_hat"]
    assert torch.equal(x_hat[:, [1, 3]], x[:, [1, 3]])
    z2 = z.clone()
    z2[:, 2] += 1.0  # the decoder sees the condition
    assert not torch.allclose(model.decode(z2)[:, [0, 2, 4]], x_hat[:, [0, 2, 4]])
    with pytest.raises(Exception, match="conditions"):
        build_model(ModelConfig(name="cvae", options={"conditions": ["nope"]}), 5, columns=COLUMNS)


@pytest.mark.parametrize("update", ["ema", "loss"])
def test_vqvae_indices_straight_through_and_codebook_updates(update: str) -> None:
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(
            name="vqvae",
            latent_dim=4,
            hidden=[8],
            options={"codebook_size": 16, "code_dim": 2, "codebook_update": update},
        ),
        5,
    )
    assert model.n_slots == 2
    x = torch.randn(64, 5, dtype=torch.float64)
    model.eval()
    idx = model.encode_indices(x)
    assert idx.dtype == torch.int64 and idx.shape == (64, 2)
    assert int(idx.min()) >= 0 and int(idx.max()) < 16
    # the quantised latent is the codebook vectors the indices pick
    assert torch.equal(model.codebook[idx].reshape(64, 4), model.encode(x))
    before = model.codebook.detach().clone()
    model(x)
    assert torch.equal(model.codebook, before)  # no update in eval
    model.train()
    out = model(x)
    loss = out["x_hat"].pow(2).mean() + sum(model.regularisers(x, out).values())
    loss.backward()
    first = model.encoder[0]
    assert first.weight.grad.abs().sum() > 0  # straight-through gradient reaches the encoder
    if update == "ema":
        assert not torch.equal(model.codebook, before) and "codebook" not in model.regularisers(
            x, out
        )
    else:
        assert model.codebook.grad is not None and model.codebook.grad.abs().sum() > 0


def test_aae_discriminator_has_its_own_optimiser_and_ratio(monkeypatch) -> None:
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(name="aae", latent_dim=2, hidden=[8], options={"d_steps": 3, "d_hidden": [8]}),
        5,
    )
    disc = {id(p) for p in model.discriminator.parameters()}
    assert disc == {id(p) for p in model.auxiliary_parameters()}
    assert not disc & {id(p) for p in model.main_parameters()}
    calls = []
    original = model.auxiliary_loss
    monkeypatch.setattr(model, "auxiliary_loss", lambda x, out: calls.append(1) or original(x, out))
    d_before = [p.detach().clone() for p in model.discriminator.parameters()]
    x = np.random.default_rng(0).normal(size=(200, 5))
    result = fit(
        model,
        x[:100],
        x[100:],
        TrainingConfig(epochs=1, batch_size=50, lr_patience=0),
        torch.device("cpu"),
    )
    assert len(calls) == 2 * 3  # two batches, three discriminator steps each
    assert "train_discriminator" in result.history[0]
    assert "train_adversarial" in result.history[0]
    assert any(
        not torch.equal(a, b)
        for a, b in zip(d_before, model.discriminator.parameters(), strict=True)
    )
