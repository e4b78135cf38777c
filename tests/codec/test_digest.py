"""The per-chunk content digest: exact on the compressing platform, tolerant of the
cross-device drift the bounded mode is designed for elsewhere, and never of a change
the size of an error bound."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
import xxhash

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
