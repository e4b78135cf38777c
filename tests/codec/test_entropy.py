"""Integer coders round-trip every stream exactly; the range coder beats zstd on skewed codes."""

from __future__ import annotations

import numpy as np
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from baler_ext.codec.entropy import CODER_REGISTRY, get_coder, unzigzag, zigzag
from baler_ext.errors import ConfigError

ints = st.one_of(st.integers(-3, 3), st.integers(-10_000, 10_000), st.integers(-(2**40), 2**40))


@pytest.mark.parametrize("name", sorted(CODER_REGISTRY))
@settings(max_examples=60, deadline=None)
@given(codes=hnp.arrays(np.int64, st.integers(0, 300), elements=ints))
def test_round_trip(name, codes):
    coder = get_coder(name)
    arrays = coder.encode(codes)
    np.testing.assert_array_equal(coder.decode(arrays, codes.size), codes)


def test_zigzag_inverse():
    k = np.array([0, -1, 1, -2, 2, -(2**40), 2**40])
    assert zigzag(k).tolist()[:5] == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(unzigzag(zigzag(k)), k)


def test_range_coder_is_near_the_entropy_and_beats_zstd():
    rng = np.random.default_rng(1)
    codes = np.rint(rng.laplace(0, 1.5, 100_000)).astype(np.int64)
    _, counts = np.unique(codes, return_counts=True)
    prob = counts / counts.sum()
    entropy_bytes = -(counts * np.log2(prob)).sum() / 8
    cctx = zstandard.ZstdCompressor(level=19)
    sizes = {
        name: sum(len(cctx.compress(a.tobytes())) for a in get_coder(name).encode(codes).values())
        for name in CODER_REGISTRY
    }
    assert sizes["range"] < 1.02 * entropy_bytes + 200
    assert sizes["range"] < sizes["zstd"]


def test_unknown_coder():
    with pytest.raises(
        ConfigError, match=r"unknown compression\.entropy_coder 'huffman'; valid: zstd"
    ):
        get_coder("huffman")


@pytest.mark.parametrize(
    "codes",
    [
        np.random.default_rng(1).integers(-30_000, 30_000, 5000),
        np.r_[np.random.default_rng(2).integers(0, 1 << 20, 3000), -(1 << 30)],
    ],
)
def test_wide_flat_streams_are_split_not_escaped(codes):
    coder = get_coder("range")
    arrays = coder.encode(codes)
    assert arrays["head"].size == 3 and arrays["head"][2] > 0 and "esc" not in arrays
    assert np.array_equal(coder.decode(arrays, codes.size), codes)
    assert arrays["bits"].nbytes * 8 / codes.size < np.log2(np.ptp(codes) + 1) + 0.5


def test_escape_window_shrinks_to_the_codes_it_holds():
    """A residual that wraps (phi by 2 pi): most codes in a handful of bins, a few far out.
    The window holds only the occupied bins, the far codes are escaped, and the stream
    round-trips; the count table is that of the narrow window, not of 4096 bins."""
    rng = np.random.default_rng(3)
    codes = rng.integers(-2, 4, 20_000)
    far = rng.choice(codes.size, 40, replace=False)
    codes[far] = np.where(rng.random(40) < 0.5, -31_416, 31_416)
    coder = get_coder("range")
    arrays = coder.encode(codes)
    lo, k = arrays["head"].tolist()[:2]
    assert (lo, k) == (-2, 6)
    assert arrays["counts"].size == k + 1 and int(arrays["counts"][-1]) == 40
    np.testing.assert_array_equal(np.sort(arrays["esc"]), np.sort(codes[far]))
    np.testing.assert_array_equal(coder.decode(arrays, codes.size), codes)
