"""Tagger check: weighted ROC summaries against scikit-learn, and the paired bootstrap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from baler_ext.analysis import AnalysisSpec
from baler_ext.analysis.bootstrap import PairedSample, paired_bootstrap
from baler_ext.analysis.tagger import TaggerShifts, _Roc, tagger_arrays
from baler_ext.errors import ConfigError, FitError


def sample(rng: np.random.Generator, n: int = 4000) -> pd.DataFrame:
    truth = rng.uniform(size=n) < 0.3
    tau2 = rng.uniform(0.1, 0.4, n)
    tau32 = np.where(truth, rng.beta(3, 5, n), rng.beta(5, 3, n))
    return pd.DataFrame({"tau2": tau2, "tau3": tau32 * tau2, "matched": truth.astype(np.int32)})


def test_auc_and_efficiency_match_sklearn_with_weights_and_ties() -> None:
    rng = np.random.default_rng(0)
    score = np.round(rng.normal(size=3000), 1)  # ties, as quantisation makes
    truth = rng.uniform(size=3000) < 0.4 + 0.2 * (score > 0)
    weights = rng.integers(0, 4, 3000).astype(np.float64)
    auc, eff = _Roc(score, truth).summary(weights, eff_b=0.1)
    assert auc == pytest.approx(roc_auc_score(truth, score, sample_weight=weights), abs=1e-12)
    fpr, tpr, _ = roc_curve(truth, score, sample_weight=weights, drop_intermediate=False)
    assert eff == pytest.approx(float(np.interp(0.1, fpr, tpr)), abs=1e-9)


def test_tagger_arrays_orient_select_and_check() -> None:
    df = sample(np.random.default_rng(1))
    spec = AnalysisSpec(
        tagger_score="tau3/tau2",
        tagger_truth="matched",
        tagger_signal="low",
        selection=["tau2 > 0.2"],
    )
    score, truth, keys = tagger_arrays(df, spec, np.arange(len(df)))
    keep = df["tau2"].to_numpy() > 0.2
    assert np.allclose(score, -(df["tau3"] / df["tau2"]).to_numpy()[keep])
    assert keys.tolist() == np.flatnonzero(keep).tolist()
    assert roc_auc_score(truth, score) > 0.8  # low tau32 = signal, oriented upwards
    with pytest.raises(ConfigError, match="tagger_truth"):
        tagger_arrays(
            df, AnalysisSpec(tagger_score="tau3", tagger_truth="nope"), np.arange(len(df))
        )


def test_tagger_paired_bootstrap_sees_a_degraded_score() -> None:
    """Smearing the score lowers the AUC by many paired σ, far fewer unpaired σ."""
    rng = np.random.default_rng(2)
    df = sample(rng)
    spec = AnalysisSpec(tagger_score="tau3/tau2", tagger_truth="matched", tagger_signal="low")
    rows = np.arange(len(df))
    s0, t0, k0 = tagger_arrays(df, spec, rows)
    s1 = s0 + rng.normal(0.0, 0.05, s0.size)
    stat = TaggerShifts(PairedSample(s0, k0), PairedSample(s1, k0), t0, t0, 10.0)
    res = paired_bootstrap([stat], len(df), 60, progress=False)
    auc = res["auc"]
    assert auc.delta < 0
    assert auc.n_sigma_paired > 5
    assert auc.sigma_paired < 0.5 * np.hypot(auc.sigma_before, auc.sigma_after)
    assert 0.0 < res["signal_efficiency"].before < 1.0


def test_tagger_without_background_fails_clearly() -> None:
    s = PairedSample(np.ones(10), np.arange(10))
    with pytest.raises(FitError, match="no background"):
        TaggerShifts(s, s, np.ones(10, bool), np.ones(10, bool), 10.0)


def test_spec_validates_tagger_keys() -> None:
    with pytest.raises(ConfigError, match="go together"):
        AnalysisSpec.from_dict({"tagger_score": "tau3/tau2"})
    with pytest.raises(ConfigError, match="tagger_signal"):
        AnalysisSpec.from_dict(
            {"tagger_score": "tau3", "tagger_truth": "m", "tagger_signal": "down"}
        )
    with pytest.raises(ConfigError, match="not allowed"):
        AnalysisSpec.from_dict({"tagger_score": "__import__('os')", "tagger_truth": "m"})
