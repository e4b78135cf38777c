"""Escaped learned codes coded inside their range-coded stream (format 1.3)."""

from __future__ import annotations

import constriction
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baler_ext.codec.probability import escapes
from baler_ext.codec.probability import learned as lrn
from baler_ext.errors import ContainerError

INT64 = st.integers(-(1 << 63), (1 << 63) - 1)


@settings(max_examples=50, deadline=None)
@given(values=st.lists(INT64, max_size=40), before=st.lists(st.integers(0, 9), max_size=20))
def test_escapes_round_trip_between_other_symbols(values, before):
    k = np.array(values, np.int64)
    enc = constriction.stream.queue.RangeEncoder()
    model = constriction.stream.model.Uniform(10)
    enc.encode(np.array(before, np.int32), model)
    escapes.encode(enc, k)
    enc.encode(np.array(before, np.int32), model)  # what follows still decodes
    dec = constriction.stream.queue.RangeDecoder(enc.get_compressed())
    assert list(dec.decode(model, len(before))) == before
    np.testing.assert_array_equal(escapes.decode(dec, len(k)), k)
    assert list(dec.decode(model, len(before))) == before


def test_zigzag_and_bit_lengths_are_exact_at_the_extremes():
    k = np.array([0, -1, 1, -2, 2, (1 << 62), -(1 << 63), (1 << 63) - 1], np.int64)
    z = escapes.zigzag(k)
    assert z.tolist() == [0, 1, 2, 3, 4, 1 << 63, (1 << 64) - 1, (1 << 64) - 2]
    np.testing.assert_array_equal(escapes.unzigzag(z), k)
    assert escapes.bit_lengths(z).tolist() == [0, 1, 2, 2, 3, 64, 64, 64]
    # the cost: log2(65) for the length plus the bits below the leading one
    np.testing.assert_allclose(escapes.escape_bits(k[:3]), np.log2(65) + np.array([0, 0, 1]))


def test_escapes_cost_what_escape_bits_says():
    rng = np.random.default_rng(0)
    k = rng.integers(-(1 << 20), 1 << 20, 5000)
    enc = constriction.stream.queue.RangeEncoder()
    escapes.encode(enc, k)
    spent = enc.get_compressed().nbytes * 8
    ideal = escapes.escape_bits(k).sum()
    assert ideal < 26 * len(k)  # far below the 64 bits of a verbatim int64
    assert abs(spent - ideal) < 0.001 * ideal + 64


def test_a_stream_with_inline_escapes_refuses_an_esc_section():
    enc = lrn.StreamEncoder(inline=True)
    mu = np.zeros(3, np.int64)
    ell = np.full(3, 40, np.int64)
    enc.add(np.array([0, 1 << 40, -5], np.int64), mu, ell)  # 1 << 40 escapes
    arrays = enc.finish()
    assert "esc" not in arrays
    dec = lrn.StreamDecoder(arrays, inline=True)
    np.testing.assert_array_equal(dec.take(mu, ell), [0, 1 << 40, -5])
    with pytest.raises(ContainerError, match="escape section"):
        lrn.StreamDecoder({**arrays, "esc": np.array([1 << 40])}, inline=True)
