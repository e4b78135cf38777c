"""Plots are checked for content, not only for existing: the rendered image reflects the data."""

from __future__ import annotations

import numpy as np
import pytest

from baler_ext.evaluation.plots import plot_histogram


def ink(path) -> np.ndarray:
    """Per pixel: how far from white (0 = white)."""
    import matplotlib.image as mpimg

    img = mpimg.imread(path)[..., :3]
    return 1.0 - img.mean(axis=2)


@pytest.fixture
def sample() -> np.ndarray:
    return np.random.default_rng(0).normal(500.0, 50.0, 20_000)


def test_histogram_image_shows_the_data_and_its_differences(sample, tmp_path):
    same = plot_histogram(sample, sample.copy(), "pt", tmp_path / "same")
    shifted = plot_histogram(sample, sample * 1.2, "pt", tmp_path / "shifted")
    a, b = ink(same), ink(shifted)
    assert a.shape == b.shape
    assert (a > 0.2).mean() > 0.02  # lines, bars and labels were drawn
    # a 20 % scale change must show up: more ink where the second histogram sits
    assert np.abs(a - b).mean() > 0.003
    # and the identical pair redraws to the same picture (deterministic rendering)
    again = ink(plot_histogram(sample, sample.copy(), "pt", tmp_path / "again"))
    assert np.array_equal(a, again)
