"""Per-object and event-level invariant masses."""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import pytest

from baler_ext.analysis import (
    AnalysisSpec,
    analysis_values,
    compute_mass,
    invariant_mass,
    ptetaphim_to_pxpypze,
)
from baler_ext.errors import ConfigError


@pytest.fixture
def jets() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    n = 200
    pt = rng.uniform(20.0, 2000.0, n)
    eta = rng.uniform(-2.5, 2.5, n)
    phi = rng.uniform(-math.pi, math.pi, n)
    m = rng.uniform(0.0, 300.0, n)
    px, py, pz, e = ptetaphim_to_pxpypze(pt, eta, phi, m)
    return pd.DataFrame(
        {
            "event": np.repeat(np.arange(n // 4), 4),
            "pt": pt,
            "eta": eta,
            "phi": phi,
            "mass": m,
            "px": px,
            "py": py,
            "pz": pz,
            "energy": e,
        }
    )


def test_round_trip_ptetaphim(jets: pd.DataFrame) -> None:
    for variable in ("p4_ptetaphim", "p4_pxpypze"):
        cols = (
            ["pt", "eta", "phi", "mass"]
            if variable == "p4_ptetaphim"
            else ["px", "py", "pz", "energy"]
        )
        spec = AnalysisSpec(variable=variable, p4_columns=cols)
        np.testing.assert_allclose(compute_mass(jets, spec), jets["mass"], rtol=1e-9, atol=1e-9)


def test_known_vector() -> None:
    # a top quark at rest-frame mass 173 GeV with pt 500, eta 1, phi 0.3
    px, py, pz, e = ptetaphim_to_pxpypze(
        np.array([500.0]), np.array([1.0]), np.array([0.3]), np.array([173.0])
    )
    assert px[0] == pytest.approx(500 * math.cos(0.3), rel=1e-12)
    assert pz[0] == pytest.approx(500 * math.sinh(1.0), rel=1e-12)
    assert e[0] == pytest.approx(math.sqrt((500 * math.cosh(1.0)) ** 2 + 173.0**2), rel=1e-12)
    assert invariant_mass(px, py, pz, e)[0] == pytest.approx(173.0, rel=1e-9)


def test_negative_m2_is_clipped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="baler_ext.analysis.mass"):
        m = invariant_mass(
            np.array([3.0, 0.0]), np.array([4.0, 0.0]), np.zeros(2), np.array([4.9, 10.0])
        )
    np.testing.assert_allclose(m, [0.0, 10.0])
    assert "clipped 1 negative m^2" in caplog.text


def test_event_combination_matches_hand_computation(jets: pd.DataFrame) -> None:
    # shuffle rows and drop some jets so that events have 1..4 jets
    df = jets.sample(frac=1.0, random_state=3).iloc[:150]
    spec = AnalysisSpec(variable="event_combination", n_objects=3, order_by="pt")
    got = compute_mass(df, spec)

    expected = []
    for _, group in sorted(df.groupby("event"), key=lambda kv: kv[0]):
        if len(group) < 3:
            continue
        lead = group.sort_values("pt", ascending=False).iloc[:3]
        px, py, pz, e = (float(lead[c].sum()) for c in ("px", "py", "pz", "energy"))
        expected.append(math.sqrt(max(e * e - px * px - py * py - pz * pz, 0.0)))
    assert len(expected) > 5
    np.testing.assert_allclose(got, expected, rtol=1e-9)

    cart = AnalysisSpec(
        variable="event_combination", p4_kind="pxpypze", p4_columns=["px", "py", "pz", "energy"]
    )
    np.testing.assert_allclose(compute_mass(df, cart), expected, rtol=1e-9)


def test_event_combination_small_example() -> None:
    # event 1: three massless back-to-back-ish objects; event 2 has only two rows
    df = pd.DataFrame(
        {
            "event": [1, 2, 1, 1, 2, 1],
            "px": [10.0, 1.0, -10.0, 0.0, 2.0, 0.5],
            "py": [0.0, 0.0, 0.0, 5.0, 0.0, 0.0],
            "pz": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            "energy": [10.0, 1.0, 10.0, 5.0, 2.0, 0.5],
            "pt": [10.0, 1.0, 10.0, 5.0, 2.0, 0.5],
        }
    )
    spec = AnalysisSpec(
        variable="event_combination",
        p4_kind="pxpypze",
        p4_columns=["px", "py", "pz", "energy"],
        n_objects=3,
    )
    # leading three of event 1: sum p = (0, 5, 0), E = 25 -> m = sqrt(625 - 25)
    np.testing.assert_allclose(compute_mass(df, spec), [math.sqrt(600.0)])


def test_analysis_values_applies_selection(jets: pd.DataFrame) -> None:
    spec = AnalysisSpec(selection=["pt > 1000"])
    values = analysis_values(jets, spec)
    np.testing.assert_allclose(values, jets.loc[jets.pt > 1000, "mass"])


def test_missing_column_is_config_error(jets: pd.DataFrame) -> None:
    with pytest.raises(ConfigError, match="did you mean 'mass'"):
        compute_mass(jets, AnalysisSpec(column="masss"))


def test_event_combination_default_order_works_on_prefixed_columns(jets: pd.DataFrame) -> None:
    """Jet_-prefixed tables (NanoAOD style) need no order_by: the p4's pt ranks the jets."""
    df = jets.sample(frac=1.0, random_state=3).iloc[:150]
    plain = AnalysisSpec(variable="event_combination", n_objects=3, order_by="pt")
    renamed = df.rename(columns={c: f"Jet_{c}" for c in df.columns if c != "event"})
    prefixed = AnalysisSpec(
        variable="event_combination",
        n_objects=3,
        p4_columns=["Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass"],
    )
    assert prefixed.order_column == "Jet_pt"
    assert "Jet_pt" in prefixed.required_columns()
    np.testing.assert_allclose(compute_mass(renamed, prefixed), compute_mass(df, plain), rtol=1e-12)
    # a different explicit order gives other leading jets, so the default mattered
    by_eta = AnalysisSpec(
        variable="event_combination",
        n_objects=3,
        order_by="Jet_eta",
        p4_columns=["Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass"],
    )
    assert not np.allclose(compute_mass(renamed, by_eta), compute_mass(df, plain))


def test_keyed_event_combination_uses_the_default_order_too(jets: pd.DataFrame) -> None:
    """The paired bootstrap's values (with keys) are those of compute_mass, also when
    order_by is unset (it used to look up a column named None)."""
    from baler_ext.analysis.mass import analysis_values_and_keys

    df = jets.sample(frac=1.0, random_state=3).iloc[:150]
    renamed = df.rename(columns={c: f"Jet_{c}" for c in df.columns if c != "event"})
    spec = AnalysisSpec(
        variable="event_combination",
        n_objects=3,
        p4_columns=["Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass"],
    )
    values, keys = analysis_values_and_keys(renamed, spec, np.arange(len(renamed)))
    expected = compute_mass(renamed, spec)
    np.testing.assert_array_equal(values, expected[np.isfinite(expected)])
    assert len(keys) == len(values) and len(np.unique(keys)) == len(keys)
