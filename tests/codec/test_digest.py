"""The per-chunk content digest: exact on the compressing platform, tolerant of the
cross-device drift the bounded mode is designed for elsewhere, and never of a change
the size of an error bound."""

from __future__ import annotations

import base64
import hashlib
import json

import numpy as np
import pytest
import torch
import xxhash

from baler_ext.codec import digest as dg
from baler_ext.codec.digest import check_digest, chunk_digest
from baler_ext.codec.modes import BoundedMode
from baler_ext.config import CompressionConfig, ModelConfig
from baler_ext.errors import ContainerError
from baler_ext.model_store import TrainedModel
from baler_ext.models.base import build_model
from baler_ext.normalise import Normaliser

COLUMNS = ["pt", "eta", "phi", "mass", "px"]


def jets(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    pt, phi = rng.exponential(100, n) + 300, rng.uniform(-np.pi, np.pi, n)
    mass = np.abs(rng.normal(172, 15, n)).astype(np.float32).astype(np.float64)
    return np.column_stack([pt, rng.uniform(-2.4, 2.4, n), phi, mass, pt * np.cos(phi)])


@pytest.fixture(scope="module")
def decoded(another_device):
    """A bounded-mode chunk (relations on), its sections and decodes on 'other devices'."""
    values = jets(4000)
    torch.manual_seed(0)
    norm = Normaliser.fit(values, COLUMNS, "standard")
    trained = TrainedModel(
        build_model(ModelConfig(latent_dim=2, hidden=[8]), 5),
        norm,
        {"hash": "0" * 64, "arch": {"name": "sae", "latent_dim": 2}},
    )
    mode = BoundedMode(
        trained,
        CompressionConfig(mode="bounded", bounds={"default": {"rel": 1e-3}, "eta": {"abs": 1e-4}}),
        torch.device("cpu"),
    )
    mode.configure({"mass": "float32"}, set())
    sections = mode.encode(values)
    here = mode.decode(sections, len(values))
    others = []
    for sign in (-1.0, 1.0):  # the worst drift the codec's margins are built for
        with another_device(mode, sign, sign):
            others.append(mode.decode(sections, len(values)))
    return values, here, others


def test_other_device_drift_is_accepted_but_not_on_the_same_platform(decoded):
    _, here, others = decoded
    digest = chunk_digest(0, here, None, b"", [])
    assert check_digest(digest, 0, here.copy(), None, b"", [], strict=True) is True
    for other in others:
        assert not np.array_equal(other, here)  # the drift is real
        assert check_digest(digest, 0, other, None, b"", [], strict=False) is False
        with pytest.raises(ValueError, match="same platform"):
            check_digest(digest, 0, other, None, b"", [], strict=True)


@pytest.mark.parametrize("column", range(len(COLUMNS)))
def test_a_change_of_a_tenth_of_a_bound_is_refused_anywhere(decoded, column):
    values, here, _ = decoded
    digest = chunk_digest(0, here, None, b"", [])
    bound = 1e-4 if COLUMNS[column] == "eta" else 1e-3 * np.abs(values[:, column])
    for row in (0, 1234, len(values) - 1):
        bad = here.copy()
        bad[row, column] += 0.1 * (bound if np.isscalar(bound) else bound[row])
        with pytest.raises(ValueError, match="differ from those recorded"):
            check_digest(digest, 0, bad, None, b"", [], strict=False)


def test_non_finite_values_lossless_columns_counts_passthrough_and_position_are_exact(decoded):
    _, here, _ = decoded
    counts = np.full(len(here), 1, np.int64)
    digest = chunk_digest(3, here, counts, b"arrow", [1])
    changes = [
        (3, here.copy(), counts, b"arrow"),
        (3, here, counts + np.eye(1, len(here), 7, dtype=np.int64)[0], b"arrow"),
        (3, here, counts, b"arrOw"),
        (2, here, counts, b"arrow"),  # the same chunk at another position
    ]
    changes[0][1][5, 0] = np.nan
    lossless = here.copy()
    lossless[9, 1] = np.nextafter(lossless[9, 1], 10)  # one ulp in a lossless column
    changes.append((3, lossless, counts, b"arrow"))
    for chunk, values, c, passthrough in changes:
        with pytest.raises(ValueError):
            check_digest(digest, chunk, values, c, passthrough, [1], strict=False)


def test_malformed_digest_is_refused(decoded):
    _, here, _ = decoded
    with pytest.raises(ValueError, match="malformed"):
        check_digest({"blake2b": "zz"}, 0, here, None, b"", [], strict=False)


def test_removed_exception_sections_are_refused(decoded):
    """Without ``res/<col>/exc_gap`` (or ``exc_val``) the bounded decoder silently puts
    its prediction where an exception was: the digest refuses the result."""
    values, _, _ = decoded
    values = values[:500].copy()
    values[[3, 77], 0] = [np.nan, 1e300]  # stored as exceptions
    torch.manual_seed(0)
    norm = Normaliser.fit(
        values[np.isfinite(values).all(axis=1) & (values[:, 0] < 1e6)], COLUMNS, "standard"
    )
    trained = TrainedModel(
        build_model(ModelConfig(latent_dim=2, hidden=[8]), 5),
        norm,
        {"hash": "0" * 64, "arch": {"name": "sae", "latent_dim": 2}},
    )
    mode = BoundedMode(trained, CompressionConfig(mode="bounded"), torch.device("cpu"))
    mode.configure({}, set())
    sections = mode.encode(values)
    assert "res/pt/exc_gap" in sections
    digest = chunk_digest(0, mode.decode(sections, len(values)), None, b"", [])
    pair = ("res/pt/exc_gap", "res/pt/exc_val")
    for removed in (pair[:1], pair[1:], pair):
        damaged = {k: v for k, v in sections.items() if k not in removed}
        try:
            out = mode.decode(damaged, len(values))
        except (ContainerError, ValueError):  # one without the other: refused while decoding
            assert len(removed) == 1
            continue
        with pytest.raises(ValueError, match="differ from those recorded"):
            check_digest(digest, 0, out, None, b"", [], strict=False)


def _blake2b_digest(
    chunk: int, values: np.ndarray, counts: np.ndarray | None, passthrough: bytes
) -> dict:
    """A digest as files before the ``digest-xxh3`` feature recorded it, written out here
    independently of ``digest.py`` (BLAKE2b-128 of the same bytes, no lossless columns)."""
    salt = chunk.to_bytes(8, "little", signed=True)
    extra = [counts.astype("<i8").tobytes() if counts is not None else b"", passthrough, b""]
    exact, stable = (hashlib.blake2b(salt, digest_size=16) for _ in range(2))
    exact.update(np.ascontiguousarray(values, "<f8").tobytes())
    finite = np.isfinite(values)
    stable.update(np.packbits(finite).tobytes())
    stable.update(np.ascontiguousarray(values[~finite], "<f8").tobytes())
    for part in extra:
        for h in (exact, stable):
            h.update(len(part).to_bytes(8, "little"))
            h.update(part)
    sketch = chunk_digest(chunk, values, counts, passthrough, [])["sketch"]
    return {"blake2b": exact.hexdigest(), "stable": stable.hexdigest(), "sketch": sketch}


def test_new_digests_are_xxh3_and_older_blake2b_digests_are_still_checked(decoded):
    _, here, others = decoded
    counts = np.ones(len(here), np.int64)
    new = chunk_digest(1, here, counts, b"arrow", [])
    assert set(new) == {"xxh3", "stable", "sketch"}
    old = _blake2b_digest(1, here, counts, b"arrow")
    for digest in (new, old):
        assert check_digest(digest, 1, here.copy(), counts, b"arrow", [], strict=True) is True
        assert check_digest(digest, 1, others[0], counts, b"arrow", [], strict=False) is False
        flipped = here.copy()
        flipped.view(np.uint64)[123, 2] ^= np.uint64(1)  # one bit of one value
        with pytest.raises(ValueError, match="same platform"):
            check_digest(digest, 1, flipped, counts, b"arrow", [], strict=True)
        with pytest.raises(ValueError, match="differ from those recorded"):
            check_digest(digest, 1, here, counts, b"arrOw", [], strict=False)
    # a digest naming both algorithms (or neither) is malformed, not silently one of them
    for bad in ({**new, "blake2b": old["blake2b"]}, {"stable": new["stable"]}):
        with pytest.raises(ValueError, match="malformed"):
            check_digest(bad, 1, here, counts, b"arrow", [], strict=True)


def test_xxh3_hashes_the_columns_in_turn_whatever_the_memory_layout(decoded):
    """The XXH3 digest is of the matrix column by column (the bounded decoder's layout,
    hashed without a copy); a row-major copy of the same values gives the same digest."""
    _, here, _ = decoded
    assert here.flags.f_contiguous  # the bounded decoder's output
    expected = xxhash.xxh3_128()
    expected.update((5).to_bytes(8, "little", signed=True))
    for j in range(here.shape[1]):
        expected.update(np.ascontiguousarray(here[:, j], "<f8").tobytes())
    for part in (b"", b"", b""):  # counts, passthrough, context: none
        expected.update(len(part).to_bytes(8, "little"))
    for layout in (np.ascontiguousarray(here), np.asfortranarray(here)):
        assert chunk_digest(5, layout, None, b"", [])["xxh3"] == expected.hexdigest()
    swapped = here.copy(order="F")  # two rows swapped: the same columns' sums, other bits
    swapped[[0, 1]] = swapped[[1, 0]]
    with pytest.raises(ValueError, match="same platform"):
        check_digest(chunk_digest(5, here, None, b"", []), 5, swapped, None, b"", [], True)


def test_sketch_is_stored_as_integers_of_a_power_of_two_step_within_its_tolerance(decoded):
    """Format 1.4 stores the projections as integers q of a step 2^e at most a quarter of
    the drift tolerance: the rebuilt sketch lies within 2^(e-1) of the true one, and drift
    is still accepted while a tenth of a bound is not."""
    _, here, others = decoded
    sketch = chunk_digest(0, here, None, b"", [])["sketch"]
    assert set(sketch) == {"exp", "q"}
    assert all(type(q) is int for q in sketch["q"]) and len(sketch["q"]) == 2 * len(COLUMNS)
    step = 2.0 ** sketch["exp"]
    tau = dg.SIGMAS * dg.DRIFT * np.sqrt(len(here))
    assert tau / 8 < step <= tau / 4 * (1 + 1e-6)  # the largest such power of two
    true, _ = dg._sketch(here)
    rebuilt = np.ldexp(np.array(sketch["q"], float), sketch["exp"]).reshape(true.shape)
    assert np.max(np.abs(rebuilt - true)) <= step / 2
    record = chunk_digest(0, here, None, b"", [])
    assert check_digest(record, 0, others[1], None, b"", [], strict=False) is False
    moved = here.copy()
    moved[1234, 0] *= 1 + 1e-4  # a tenth of the 1e-3 relative bound, in one value
    with pytest.raises(ValueError, match="projection moved"):
        check_digest(record, 0, moved, None, b"", [], strict=False)


def test_sketch_of_files_before_1_4_is_still_read_and_a_malformed_one_refused(decoded):
    _, here, others = decoded
    new = chunk_digest(0, here, None, b"", [])
    true, _ = dg._sketch(here)
    old = {**new, "sketch": base64.b64encode(np.ascontiguousarray(true, "<f8").tobytes()).decode()}
    assert check_digest(old, 0, here.copy(), None, b"", [], strict=True) is True
    assert check_digest(old, 0, others[0], None, b"", [], strict=False) is False
    q = new["sketch"]["q"]
    for bad in (
        {"exp": 0.5, "q": q},
        {"exp": new["sketch"]["exp"], "q": [str(v) for v in q]},
        {"exp": new["sketch"]["exp"], "q": [True] * len(q)},
        {"exp": 5000, "q": q},
        {"q": q},
        [1, 2],
    ):
        with pytest.raises(ValueError, match="malformed"):
            check_digest({**new, "sketch": bad}, 0, others[0], None, b"", [], strict=False)
    short = {**new, "sketch": {"exp": new["sketch"]["exp"], "q": q[:-1]}}
    with pytest.raises(ValueError, match="wrong size"):
        check_digest(short, 0, others[0], None, b"", [], strict=False)


def test_platform_fingerprint_hashes_the_cpu_features_and_old_lists_still_compare():
    device = torch.device("cpu")
    now = dg.platform_fingerprint(device)
    assert isinstance(now["cpu"], str) and len(now["cpu"]) == 16
    assert dg.same_platform(json.loads(json.dumps(now)), device)
    listed = {**now, "cpu": list(dg._host_fingerprint()["cpu"])}  # before 1.4
    assert dg.same_platform(listed, device)
    assert not dg.same_platform({**listed, "cpu": listed["cpu"][:-1]}, device)
    assert not dg.same_platform({**now, "cpu": "0" * 16}, device)
    assert not dg.same_platform(None, device)
