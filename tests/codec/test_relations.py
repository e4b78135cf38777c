"""Relation predictors of derived columns: detection, header round trip, and the bound
under cross-device drift of the decoded inputs and of the relation itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from baler_ext.codec import relations
from baler_ext.codec.container import ContainerReader, ContainerWriter
from baler_ext.codec.modes import BoundedMode
from baler_ext.codec.relations import Relation
from baler_ext.config import CompressionConfig, ModelConfig
from baler_ext.errors import ConfigError, ContainerError
from baler_ext.model_store import TrainedModel
from baler_ext.models.base import build_model
from baler_ext.normalise import Normaliser

COLS = ["pt", "eta", "phi", "mass", "energy", "px", "py", "pz", "fa", "fb", "fc", "other"]
BOUNDS = {
    "default": {"abs": 1e-3},
    "pt": {"rel": 1e-2},
    "mass": {"rel": 1e-2},
    "energy": {"rel": 1e-3},
    "px": {"abs": 0.1},
    "py": {"abs": 0.1},
    "pz": {"abs": 0.1},
    "phi": {"abs": 1e-4},
}


def table(n: int, seed: int = 0, eta_max: float = 2.5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pt = rng.exponential(200, n) + 20
    eta = rng.uniform(-eta_max, eta_max, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    mass = np.abs(rng.normal(100, 40, n))
    mass[::11] = 0.0
    energy = np.sqrt(mass**2 + (pt * np.cosh(eta)) ** 2)
    fa, fb = rng.uniform(0, 0.5, n), rng.uniform(0, 0.5, n)
    fc = 1 - fa - fb
    return np.column_stack(
        [
            pt,
            eta,
            phi,
            mass,
            energy,
            pt * np.cos(phi),
            pt * np.sin(phi),
            pt * np.sinh(eta),
            fa,
            fb,
            fc,
            rng.normal(size=n),
        ]
    )


def trained_for(values: np.ndarray, columns: list[str]) -> TrainedModel:
    torch.manual_seed(0)
    norm = Normaliser.fit(values, columns, "standard")
    model = build_model(ModelConfig(latent_dim=2, hidden=[8]), len(norm.active))
    return TrainedModel(model, norm, {"hash": "0" * 64, "arch": {"name": "sae", "latent_dim": 2}})


def mode_for(values: np.ndarray, columns: list[str] = COLS, **cfg) -> BoundedMode:
    cfg.setdefault("bounds", BOUNDS)
    mode = BoundedMode(
        trained_for(values, columns), CompressionConfig(mode="bounded", **cfg), torch.device("cpu")
    )
    mode.configure({}, set())
    return mode


def limits(values: np.ndarray, columns: list[str]) -> np.ndarray:
    out = []
    for j, c in enumerate(columns):
        ((kind, v),) = BOUNDS.get(c, BOUNDS["default"]).items()
        out.append(np.full(len(values), v) if kind == "abs" else v * np.abs(values[:, j]))
    return np.column_stack(out)


def test_detects_kinematic_and_sum_relations():
    rels = relations.detect(table(500), COLS, set(COLS), preference="polar")
    got = {(r.kind, r.target, r.inputs) for r in rels}
    assert got == {
        ("px", "px", ("pt", "phi")),
        ("py", "py", ("pt", "phi")),
        ("pz", "pz", ("pt", "eta")),
        ("energy", "energy", ("pt", "eta", "mass")),
        ("sum", "fc", ("fa", "fb")),
    }
    # auto prefers the Cartesian direction: pt, phi, eta, energy from px, py, pz, mass
    rels = relations.detect(table(500), COLS, set(COLS))
    got = {(r.kind, r.target, r.inputs) for r in rels}
    assert got == {
        ("pt_xy", "pt", ("px", "py")),
        ("phi_xy", "phi", ("px", "py")),
        ("eta_xyz", "eta", ("px", "py", "pz")),
        ("energy_xyzm", "energy", ("px", "py", "pz", "mass")),
        ("sum", "fc", ("fa", "fb")),
    }


def test_nanoaod_prefixes_roles_and_relations_that_do_not_hold():
    cols = ["Jet_pt", "Jet_eta", "Jet_phi", "Jet_px", "FatJet_pt", "FatJet_px"]
    x = table(300)
    values = np.column_stack([x[:, 0], x[:, 1], x[:, 2], x[:, 5], x[:, 0], x[:, 5] + 1.0])
    rels = relations.detect(values, cols, set(cols))
    assert [(r.target, r.inputs) for r in rels] == [("Jet_px", ("Jet_pt", "Jet_phi"))]
    # roles by config: unusual names
    cols2 = ["a", "b", "c"]
    v2 = np.column_stack([x[:, 0], x[:, 2], x[:, 6]])
    rels2 = relations.detect(v2, cols2, set(cols2), {"a": "pt", "b": "phi", "c": "py"})
    assert [(r.kind, r.target) for r in rels2] == [("py", "c")]
    with pytest.raises(ConfigError, match="valid roles"):
        relations.candidates(cols2, {"a": "transverse"})


def test_relations_none_and_header_round_trip(tmp_path):
    x = table(400)
    off = mode_for(x, relations="none")
    off.encode(x)
    assert off.header()["relations"] == []
    mode = mode_for(x)
    sections = mode.encode(x)
    head = mode.header()
    assert {r["target"] for r in head["relations"]} == {"pt", "phi", "eta", "energy", "fc"}
    # the decoder restores the relations from the header alone
    other = BoundedMode(
        mode.trained, CompressionConfig(mode="bounded", relations="none"), torch.device("cpu")
    )
    other.load_header(head)
    out = other.decode(sections, len(x))
    assert np.all(np.abs(out - x) <= limits(x, COLS))
    # derived columns cost far less than independent ones
    size = {
        c: sum(v.nbytes for k, v in sections.items() if k.startswith(f"res/{c}/")) for c in COLS
    }
    assert size["pt"] < size["px"] and size["eta"] < size["pz"] and size["fc"] < size["fa"]


def test_header_without_relations_still_loads_and_bad_ones_are_rejected():
    x = table(100)
    mode = mode_for(x)
    mode.encode(x)
    head = mode.header()
    old = {
        k: v for k, v in head.items() if k not in ("relations", "latent_policy", "latent_chunks")
    }
    mode.load_header(old)
    assert mode.relations == []
    bad = dict(head, relations=[{"kind": "px", "target": "px", "inputs": ["pt", "nope"]}])
    with pytest.raises(ContainerError, match="unknown columns"):
        mode.load_header(bad)
    with pytest.raises(ContainerError, match="upgrade"):
        mode.load_header(
            dict(head, relations=[{"kind": "boost", "target": "px", "inputs": ["pt"]}])
        )


@pytest.mark.parametrize("policy", ["always", "never", "auto"])
def test_latent_policies_round_trip(policy):
    x = table(600, seed=3)
    x[:, -1] = 3 * x[:, 8] - x[:, 1] ** 2  # a hidden linear+quadratic dependence
    mode = mode_for(x, latent_policy=policy, relations="polar")  # eta decoded before other
    sections = mode.encode(x)
    if "lin/other" in sections:  # the linear stack finds it: almost no residual bits
        assert (
            sum(v.nbytes for k, v in sections.items() if k.startswith("res/other/"))
            < sum(v.nbytes for k, v in sections.items() if k.startswith("res/fa/")) / 4
        )
    assert ("lin/other" in sections) == (policy != "always" and "latent/lo" not in sections)
    assert ("latent/lo" in sections) == (policy == "always" or mode.latent_chunks == 1)
    assert ("pred/centre" in sections) != ("latent/lo" in sections)
    assert np.all(np.abs(mode.decode(sections, len(x)) - x) <= limits(x, COLS))


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.sampled_from([1, 2, 7, 60, 400]),
    sign=st.sampled_from([-1.0, 1.0]),
    policy=st.sampled_from(["always", "never"]),
    eta_max=st.sampled_from([1.0, 6.0, 30.0]),
    rel_sign=st.sampled_from([-1.0, 0.0, 1.0]),
)
def test_bound_holds_under_drift_of_inputs_and_relations(
    seed, n, sign, policy, eta_max, rel_sign, another_device
):
    """Perturb the model prediction by the full assumed device drift (so every decoded
    input drifts), and each relation or linear prediction by its own rounding allowance:
    every value still meets its bound."""
    x = table(n, seed, eta_max)
    fit = table(200, 1)
    mode = BoundedMode(
        trained_for(fit, COLS),
        CompressionConfig(mode="bounded", bounds=BOUNDS, latent_policy=policy),
        torch.device("cpu"),
    )
    mode.configure({"mass": "float32"}, set())
    x[:, 3] = x[:, 3].astype(np.float32)
    sections = mode.encode(x)
    if policy == "never" and n == 400:
        assert any(k.startswith("lin/") for k in sections)  # the linear stack is exercised
    lim = limits(x, COLS)
    for signs in ((None, None), (sign, None), (sign, rel_sign)):
        if signs[0] is None:
            out = mode.decode(sections, n)
        else:
            with another_device(mode, *signs):
                out = mode.decode(sections, n)
        bad = ~(np.abs(out - x) <= lim)
        assert not bad.any(), (np.argwhere(bad)[:5], signs)


def test_container_rejects_unknown_features(tmp_path):
    path = tmp_path / "f.baler"
    with path.open("wb") as fh:
        ContainerWriter(fh).close({"features": ["bounded-relations", "time-travel"]})
    with pytest.raises(ContainerError, match=r"time-travel.*upgrade"):
        ContainerReader(path)


def test_relation_dict_round_trip():
    r = Relation("sum", "c", ("a", "b"), 1.0)
    assert Relation.from_dict(r.to_dict()) == r


def test_an_unknown_coder_in_a_file_is_a_container_error():
    """The coder name comes from the file: a damaged or newer file, not a bad config."""
    x = table(100)
    mode = mode_for(x)
    sections = mode.encode(x)
    head = mode.header()
    with pytest.raises(ContainerError, match="entropy coder 'huffman'"):
        mode.load_header(dict(head, entropy_coder="huffman"))
    mode.load_header(head)  # the real name still loads and decodes
    assert np.all(np.abs(mode.decode(sections, len(x)) - x) <= limits(x, COLS))


def test_auto_latent_policy_decides_on_a_sample_and_codes_the_chunk_once(monkeypatch):
    """A chunk of ≥ 4 × DECIDE_ROWS rows is coded both ways only on a sample; the full
    chunk is coded once, with the option that is also smaller when both are coded."""
    from baler_ext.codec import modes

    monkeypatch.setattr(modes, "DECIDE_ROWS", 256)
    x = table(4000, seed=5)
    x[:, -1] = 3 * x[:, 8] - x[:, 1] ** 2
    mode = mode_for(x, latent_policy="auto", relations="polar")
    calls: list[tuple[int, bool]] = []
    original = BoundedMode._encode_classical

    def spy(self, values, use_latent):
        calls.append((len(values), use_latent))
        return original(self, values, use_latent)

    monkeypatch.setattr(BoundedMode, "_encode_classical", spy)
    sections = mode.encode(x)
    full = [c for c in calls if c[0] == len(x)]
    assert len(full) == 1 and len(calls) == 3  # two sample codings, one full one
    both = {u: original(mode, x, u).nbytes for u in (True, False)}
    assert full[0][1] == (both[True] < both[False])
    assert ("latent/lo" in sections) == full[0][1]
    assert np.all(np.abs(mode.decode(sections, len(x)) - x) <= limits(x, COLS))


def test_shared_hypotenuses_give_the_bits_of_computing_each_relation_alone():
    """pt_xy, eta_xyz and energy_xyzm share hypot(px, py) and hypot(rho, pz) through the
    chunk's cache: predictions and drifts are bit for bit those computed without it, and
    the shared arrays cannot be changed by a caller."""
    rng = np.random.default_rng(3)
    n = 5000
    v = {c: rng.normal(0, 100, n) for c in ("px", "py", "pz")}
    v["mass"] = np.abs(rng.normal(100, 40, n))
    v["px"][:3] = [0.0, np.nan, np.inf]  # a zero hypotenuse, non-finite inputs
    drift = {c: np.abs(rng.normal(0, 1e-9, n)) * np.abs(x) for c, x in v.items()}
    rels = [
        Relation("pt_xy", "pt", ("px", "py")),
        Relation("phi_xy", "phi", ("px", "py")),
        Relation("eta_xyz", "eta", ("px", "py", "pz")),
        Relation("energy_xyzm", "energy", ("px", "py", "pz", "mass")),
    ]
    cache: dict = {}
    for rel in rels:
        alone_p, alone_d = relations.predict(rel, v, drift)
        p, d = relations.predict(rel, v, drift, cache)
        assert p.view(np.uint64).tolist() == alone_p.view(np.uint64).tolist()
        assert d.view(np.uint64).tolist() == alone_d.view(np.uint64).tolist()
        value = relations.value(rel, v, cache)
        assert value.view(np.uint64).tolist() == relations.value(rel, v).view(np.uint64).tolist()
    assert len(cache) == 2
    for shared in cache.values():
        with pytest.raises(ValueError):
            shared += 1.0
