"""Precision policy (glob bounds, the nanoaod policy, mantissa rounding) and exact values."""

from __future__ import annotations

import numpy as np
import pytest

from baler_ext.config import config_from_dict
from baler_ext.errors import ConfigError
from baler_ext.exact import apply_overrides, detect_exact, override_sections
from baler_ext.precision import (
    bits_to_rel,
    explicit_bounds,
    is_lossless,
    rel_to_bits,
    resolve_precision,
    round_mantissa,
)

NANO = [
    "Jet_pt",
    "Jet_eta",
    "Jet_phi",
    "Jet_mass",
    "Jet_btagDeepB",
    "Jet_chHEF",
    "Muon_pt",
    "Muon_eta",
    "Electron_pfRelIso04_all",
    "MET_sumEt",
    "Jet_Px",
    "Muon_E",
]


def test_most_specific_pattern_wins_and_exact_names_beat_globs():
    bounds = {
        "default": {"rel": 1e-2},
        "*_pt": {"rel": 1e-3},
        "Jet_*": {"abs": 0.5},
        "Jet_pt": {"rel": 1e-4},
        "*_e?a": {"abs": 1e-3},
    }
    got = resolve_precision("none", bounds, ["Jet_pt", "Muon_pt", "Jet_eta", "Muon_eta", "x"])
    assert got["Jet_pt"].bound == {"rel": 1e-4} and got["Jet_pt"].pattern == "Jet_pt"
    assert got["Muon_pt"].bound == {"rel": 1e-3}
    # 'Jet_*' (4 literal characters) beats '*_e?a' (3)
    assert got["Jet_eta"].bound == {"abs": 0.5}
    assert got["Muon_eta"].bound == {"abs": 1e-3}
    assert got["x"].bound == {"rel": 1e-2} and got["x"].pattern == "default"


def test_rntuple_dotted_names_match_nanoaod_patterns():
    got = resolve_precision("nanoaod", {"Jet.eta": {"abs": 1e-3}}, ["Jet.pt", "Jet.eta"])
    assert got["Jet.pt"].pattern == "*Jet*_pt" and got["Jet.pt"].bound == {"rel": 2.0**-11}
    assert got["Jet.eta"].pattern == "Jet.eta"


def test_config_entries_extend_and_override_the_policy():
    got = resolve_precision("nanoaod", {"*_pt": {"bits": 8}, "Jet_eta": {"abs": 0.01}}, NANO)
    # '*Jet*_pt' of the policy is more specific than the config's '*_pt'
    assert got["Jet_pt"].origin == "policy nanoaod"
    assert got["Muon_pt"].bound == {"rel": bits_to_rel(8)} and got["Muon_pt"].origin == "config"
    assert got["Jet_eta"].bound == {"abs": 0.01}


def test_nanoaod_policy_follows_nanoaod_precisions():
    got = {c: r.bound["rel"] for c, r in resolve_precision("nanoaod", {}, NANO).items()}
    assert got["Jet_pt"] == got["Jet_mass"] == got["Jet_btagDeepB"] == bits_to_rel(10)
    assert got["Jet_eta"] == got["Jet_phi"] == got["Muon_eta"] == bits_to_rel(12)
    assert got["Jet_chHEF"] == bits_to_rel(6)
    assert got["Electron_pfRelIso04_all"] == bits_to_rel(10)
    assert got["Jet_Px"] == bits_to_rel(10)  # Cartesian jet momenta: as the jet pt
    for full in ("Muon_pt", "MET_sumEt", "Muon_E"):  # NanoAOD's precision = -1
        assert is_lossless({"rel": got[full]}, "float32")
    assert not is_lossless({"rel": got["Jet_pt"]}, "float32")


def test_unknown_names_and_policies_are_one_line_errors():
    with pytest.raises(ConfigError, match=r"no compressed column 'Jet_tp'.*did you mean"):
        resolve_precision("none", {"default": {"rel": 1e-3}, "Jet_tp": {"rel": 1e-3}}, ["Jet_pt"])
    with pytest.raises(ConfigError, match=r"unknown compression\.policy"):
        resolve_precision("nanoAOD-v9", {"default": {"rel": 1e-3}}, ["x"])


def test_explicit_bounds_name_every_column():
    resolved = resolve_precision("nanoaod", {}, NANO)
    explicit = explicit_bounds(resolved)
    assert set(explicit) == {*NANO, "default"}
    assert all(set(v) <= {"abs", "rel"} for v in explicit.values())


@pytest.mark.parametrize("bits", [4, 6, 10, 12, 20])
def test_mantissa_rounding_error_is_within_the_relative_bound(bits):
    rng = np.random.default_rng(bits)
    x = (rng.standard_normal(50_000) * 10.0 ** rng.uniform(-6, 6, 50_000)).astype(np.float32)
    y = round_mantissa(x, bits)
    rel = np.abs(y.astype(np.float64) - x) / np.abs(x.astype(np.float64))
    assert rel.max() <= bits_to_rel(bits)
    assert rel.max() > 0.5 * bits_to_rel(bits)  # and the rounding really drops bits
    dropped = y.view(np.uint32) & np.uint32((1 << (23 - bits)) - 1)
    assert not dropped.any()
    assert rel_to_bits(bits_to_rel(bits)) == bits


def test_config_accepts_bits_and_the_policy_and_defaults_to_bounded():
    cfg = config_from_dict(
        {"compression": {"policy": "nanoaod", "bounds": {"*_pt": {"bits": 10}}}}, "t"
    )
    assert cfg.compression.mode == "bounded"
    with pytest.raises(ConfigError, match="bits' must be an integer in 1-23"):
        config_from_dict({"compression": {"bounds": {"default": {"bits": 30}}}}, "t")
    with pytest.raises(ConfigError, match="not one of none, nanoaod"):
        config_from_dict({"compression": {"policy": "cms"}}, "t")


def test_sentinels_and_discrete_columns_are_found_on_training_data():
    rng = np.random.default_rng(3)
    n = 20_000
    btag = rng.uniform(0, 1, n)
    btag[rng.random(n) < 0.05] = -1.0
    flag = rng.integers(0, 3, n).astype(np.float64)
    pt = rng.exponential(50, n)
    found = detect_exact(np.column_stack([btag, flag, pt]), ["btag", "flag", "pt"])
    assert found["sentinels"] == {"btag": [-1.0]}
    assert found["discrete"] == {"flag": [0.0, 1.0, 2.0]}


def test_override_sections_restore_sentinels_exactly():
    rng = np.random.default_rng(4)
    values = rng.normal(size=(5000, 2))
    hit = rng.random(5000) < 0.1
    values[hit, 1] = -999.0
    values[~hit & (rng.random(5000) < 0.05), 1] = -1.0
    exact = {"b": np.array([-999.0, -1.0])}
    sections = override_sections(values, ["a", "b"], exact)
    damaged = values + 1e-3  # any lossy reconstruction
    restored = apply_overrides(damaged, ["a", "b"], exact, sections)
    sentinel = np.isin(values[:, 1], exact["b"])
    np.testing.assert_array_equal(restored[sentinel, 1], values[sentinel, 1])
    assert np.all(restored[~sentinel, 1] == values[~sentinel, 1] + 1e-3)
