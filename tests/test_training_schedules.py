"""β schedules, the CVAE's weighted reconstruction and conditional terms, zero/random init."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from baler_ext.config import ModelConfig, TrainingConfig
from baler_ext.errors import ConfigError
from baler_ext.models import build_model
from baler_ext.training import batch_terms, beta_factor, fit, init_weights, seed_everything

CPU = torch.device("cpu")
COLUMNS = ["pt", "eta", "phi", "mass", "px", "py"]


def data(n: int = 400) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(n, 3))
    return base @ rng.normal(size=(3, len(COLUMNS)))


def vae(name: str = "vae", **options) -> torch.nn.Module:
    seed_everything(0)
    kw = {"columns": COLUMNS} if name == "cvae" else {}
    return build_model(
        ModelConfig(name=name, latent_dim=2, hidden=[16, 8], options=options), len(COLUMNS), **kw
    )


def grads(model: torch.nn.Module, loss: torch.Tensor) -> dict[str, torch.Tensor | None]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}


# --- β schedules -------------------------------------------------------------------------


def test_linear_schedule_warms_up_from_zero() -> None:
    cfg = TrainingConfig(beta_schedule="linear", beta_warmup_epochs=4)
    f = [beta_factor(e, cfg) for e in range(1, 9)]
    assert f[0] == 0.0  # the first epoch trains the reconstruction alone
    assert all(b > a for a, b in itertools.pairwise(f[:5]))  # strictly rising
    assert f[4:] == [1.0] * 4  # full weight from epoch warmup + 1 on


def test_cyclical_schedule_repeats_its_warm_up() -> None:
    cfg = TrainingConfig(beta_schedule="cyclical", beta_cycle_epochs=4, beta_ramp_fraction=0.5)
    f = [beta_factor(e, cfg) for e in range(1, 13)]
    assert f[0::4] == [0.0, 0.0, 0.0]  # every cycle starts at 0
    assert f[:4] == f[4:8] == f[8:12]  # period = cycle length
    assert f[1] == 0.5 and f[2] == f[3] == 1.0  # rises over half the cycle, then holds
    assert [beta_factor(e, TrainingConfig()) for e in (1, 50)] == [1.0, 1.0]


def test_bad_schedule_settings_fail_clearly() -> None:
    from baler_ext.config import build_section

    with pytest.raises(ConfigError, match="beta_schedule"):
        build_section(TrainingConfig, {"beta_schedule": "cosine"}, "cfg", "training")
    with pytest.raises(ConfigError, match="beta_ramp_fraction"):
        build_section(TrainingConfig, {"beta_ramp_fraction": 0.0}, "cfg", "training")


def test_zero_beta_factor_removes_the_kl_from_the_gradient() -> None:
    model, x, cfg = vae(beta=1.0), torch.as_tensor(data()[:64]), TrainingConfig()
    model.eval()  # deterministic forward: the same z in every call
    terms, _ = batch_terms(model, x, cfg, annealing=0.0)
    assert float(terms["kl"].detach()) == 0.0
    g_zero = grads(model, terms["total"])
    g_rec = grads(model, batch_terms(model, x, cfg)[0]["reconstruction"])
    g_full = grads(model, batch_terms(model, x, cfg)[0]["total"])
    for name, g in g_zero.items():
        if g_rec[name] is None:  # the log-variance head feeds the KL only
            assert g is None or torch.count_nonzero(g) == 0, name
        else:
            assert torch.allclose(g, g_rec[name]), name
    assert not torch.allclose(g_full["mu_head.weight"], g_zero["mu_head.weight"])


def test_linear_warm_up_is_logged_per_epoch_and_weights_the_kl() -> None:
    x = data()
    cfg = TrainingConfig(
        epochs=4,
        batch_size=100,
        lr_patience=0,
        early_stopping_patience=0,
        beta_schedule="linear",
        beta_warmup_epochs=2,
    )
    hist = fit(vae(beta=0.5), x[:300], x[300:], cfg, CPU).history
    assert [h["beta"] for h in hist] == [0.0, 0.25, 0.5, 0.5]
    assert hist[0]["train_kl"] == 0.0 and hist[1]["train_kl"] > 0.0
    # validation always uses the target weight, so epochs stay comparable
    assert all(h["val_kl"] > 0.0 for h in hist)
    plain = fit(
        build_model(ModelConfig(latent_dim=2, hidden=[8]), 6),
        x[:300],
        x[300:],
        TrainingConfig(epochs=1, lr_patience=0),
        CPU,
    ).history
    assert "beta" not in plain[0]  # no KL, no β column


# --- the conditional VAE's loss terms ----------------------------------------------------


def test_cvae_without_wy_has_no_conditional_term_or_head() -> None:
    model = vae("cvae", conditions=["pt"])
    terms, _ = batch_terms(model, torch.as_tensor(data()[:64]), TrainingConfig())
    assert set(terms) == {"reconstruction", "kl", "total"}
    assert model.condition_head is None
    assert "condition_head.0.weight" not in model.state_dict()


def test_cvae_conditional_term_trains_the_condition_head_only_through_wy() -> None:
    x = torch.as_tensor(data()[:64])
    model = vae("cvae", conditions=["pt", "eta"], wy=2.0)
    model.eval()
    terms, out = batch_terms(model, x, TrainingConfig())
    assert set(terms) == {"reconstruction", "conditional", "kl", "total"}
    expect = 2.0 * torch.mean((out["c_hat"] - x[:, [0, 1]]) ** 2)
    assert torch.allclose(terms["conditional"], expect)
    g_total = grads(model, terms["total"])
    assert torch.count_nonzero(g_total["condition_head.0.weight"]) > 0
    # the reconstruction and KL terms do not reach the condition head
    terms, _ = batch_terms(model, x, TrainingConfig())
    g_rest = grads(model, terms["reconstruction"] + terms["kl"])
    assert g_rest["condition_head.0.weight"] is None


def test_cvae_wx_weights_the_reconstruction_of_the_other_columns_only() -> None:
    x = torch.as_tensor(data()[:64])
    one, three = vae("cvae", conditions=["pt"]), vae("cvae", conditions=["pt"], wx=3.0)
    one.eval()
    three.eval()
    t1, out = batch_terms(one, x, TrainingConfig(loss="l1_mean"))
    t3, _ = batch_terms(three, x, TrainingConfig(loss="l1_mean"))
    # mean over the 5 non-condition columns (the condition is restored exactly)
    assert torch.allclose(t1["reconstruction"], torch.mean(torch.abs(out["x_hat"] - x)[:, 1:]))
    assert torch.allclose(t3["reconstruction"], 3.0 * t1["reconstruction"])
    off = vae("cvae", conditions=["pt"], wx=0.0, wy=1.0)
    g = grads(off, batch_terms(off, x, TrainingConfig())[0]["total"])
    assert all(
        g[n] is None or torch.count_nonzero(g[n]) == 0 for n in g if n.startswith("decoder")
    )  # wx = 0: nothing trains the decoder


def test_cvae_rejects_negative_weights() -> None:
    with pytest.raises(ConfigError, match="wx and wy"):
        vae("cvae", conditions=["pt"], wy=-1.0)


# --- zero / random initialisation --------------------------------------------------------


def test_zero_init_learns_only_a_constant_row() -> None:
    x = data()
    model = build_model(ModelConfig(latent_dim=2, hidden=[16, 8]), 6)
    init_weights(model, "zero")
    fit(model, x[:300], x[300:], TrainingConfig(epochs=3, batch_size=50, lr_patience=0), CPU)
    model.eval()
    with torch.no_grad():
        x_hat = model(torch.as_tensor(x[300:]))["x_hat"].numpy()
    assert np.ptp(x_hat, axis=0).max() == 0.0  # the same row for every input
    assert np.abs(x_hat[0]).max() > 0.0  # ... which did move: the output bias learns


def test_random_init_is_a_small_gaussian_whatever_the_layer_size() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(latent_dim=8, hidden=[200, 100]), 17)
    init_weights(model, "random")
    for layer in (model.encoder[0], model.encoder[2]):
        assert float(layer.weight.detach().std()) == pytest.approx(0.01, rel=0.05)
