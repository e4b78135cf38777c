"""Comb diagnostic, distinct fraction, cut changes and paired ratio errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from baler_ext.evaluation.diagnostics import (
    comb_diagnostic,
    cut_change,
    distinct_fraction,
    paired_bin_sigma,
)
from baler_ext.evaluation.plots import PDF_PAGE_SIZE, loss_columns, write_pdf
from baler_ext.plotting import hep_figure, save_png

REL = 1e-2


def jets(n: int = 20_000, seed: int = 0) -> np.ndarray:
    """A steeply falling pt-like spectrum."""
    return 300.0 + np.random.default_rng(seed).exponential(150.0, n)


def log_grid(x: np.ndarray, rel: float = REL) -> np.ndarray:
    """Round onto the logarithmic grid of a relative quantiser: |error| <= rel * |x|."""
    step = np.log1p(2 * rel)
    return np.exp(np.round(np.log(x) / step) * step)


def test_a_comb_is_flagged_and_dithered_errors_are_not() -> None:
    x = jets()
    combed = log_grid(x)
    assert np.all(np.abs(combed - x) <= REL * x * (1 + 1e-12))  # the bound holds
    comb = comb_diagnostic(x, combed, ("rel", REL))
    assert comb["comb"] and comb["comb_ratio"] > 20
    # subtractive dithering: the same grid, offset by a known pseudo-random shift per value
    u = np.random.default_rng(1).uniform(-0.5, 0.5, x.size)
    step = np.log1p(2 * REL)
    dithered = np.exp((np.round(np.log(x) / step + u) - u) * step)
    assert np.all(np.abs(np.log(dithered / x)) <= 0.5 * step + 1e-12)
    ok = comb_diagnostic(x, dithered, ("rel", REL))
    assert not ok["comb"] and 0.5 < ok["comb_ratio"] < 2.0
    assert distinct_fraction(combed) < 0.01 < 0.99 < distinct_fraction(dithered)


def test_absolute_bound_and_no_bound() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(0.0, 1.0, 20_000)
    grid = np.round(x / 2e-3) * 2e-3  # abs bound 1e-3
    assert comb_diagnostic(x, grid, ("abs", 1e-3))["comb"]
    noisy = x + rng.uniform(-1e-3, 1e-3, x.size)
    assert not comb_diagnostic(x, noisy, ("abs", 1e-3))["comb"]
    # without a bound the residual RMS sets the scale: same verdicts
    assert comb_diagnostic(x, grid)["comb"] and comb_diagnostic(x, grid)["scale"] == "residual rms"
    assert not comb_diagnostic(x, noisy)["comb"]
    assert comb_diagnostic(x, x.copy())["comb_ratio"] == 0.0  # lossless


def test_cut_change_counts_and_paired_error_match_a_bootstrap() -> None:
    x = jets(seed=3)
    combed = log_grid(x)
    original = pd.DataFrame({"pt": x, "flag": np.arange(x.size) % 2})
    decompressed = pd.DataFrame({"pt": combed})  # 'flag' is taken from the original
    c = cut_change(original, decompressed, "pt > 600 and flag == 1")
    passed_o = (x > 600) & (original["flag"] == 1)
    passed_d = (combed > 600) & (original["flag"] == 1)
    assert c["n_original"] == passed_o.sum() and c["n_decompressed"] == passed_d.sum()
    assert c["lost"] == (passed_o & ~passed_d).sum() and c["gained"] == (passed_d & ~passed_o).sum()
    assert c["delta"] == c["n_decompressed"] - c["n_original"]
    # the paired error is the bootstrap spread of the change, far below sqrt(N)
    rng = np.random.default_rng(4)
    d = passed_d.to_numpy().astype(int) - passed_o.to_numpy().astype(int)
    boots = [d[rng.integers(0, d.size, d.size)].sum() for _ in range(400)]
    assert c["sigma_paired"] == pytest.approx(np.std(boots), rel=0.15)
    assert c["sigma_paired"] < 0.5 * c["sigma_poisson"]


def test_paired_bin_sigma_counts_migrations() -> None:
    edges = np.array([0.0, 1.0, 2.0, 3.0])
    original = np.array([0.5, 0.5, 1.5, 2.5, 2.5, 5.0])
    decompressed = np.array([0.5, 1.2, 1.5, 2.5, 3.5, 2.9])
    # bin 0: one out; bin 1: one in; bin 2: one out (to overflow), one in (from overflow)
    assert paired_bin_sigma(original, decompressed, edges).tolist() == pytest.approx(
        [1.0, 1.0, np.sqrt(2.0)]
    )
    assert np.all(paired_bin_sigma(original, original, edges) == 0)


def test_loss_columns_leave_out_wall_time() -> None:
    df = pd.DataFrame(
        {
            "epoch": [1, 2],
            "train_loss": [1.0, 0.5],
            "val_loss": [1.1, 0.6],
            "lr": [1e-3, 1e-3],
            "epoch_time_s": [0.2, 0.2],
        }
    )
    assert loss_columns(df, "epoch", ["lr"]) == ["train_loss", "val_loss"]


def test_pdf_pages_have_one_size(tmp_path: Path) -> None:
    pngs = []
    for i, size in enumerate(((2.0, 1.5), (4.0, 1.5), (1.5, 3.0))):
        with hep_figure(figsize=size) as fig:
            fig.add_subplot().plot([0, 1], [0, i])
            pngs.append(save_png(fig, tmp_path, f"p{i}"))
    pdf = write_pdf(pngs, tmp_path / "out.pdf").read_bytes()
    boxes = re.findall(rb"/MediaBox \[\s*([\d.\s]+)\]", pdf)
    assert len(boxes) == 3 and len(set(boxes)) == 1
    w, h = (float(v) for v in boxes[0].split()[2:4])
    assert (w / 72, h / 72) == pytest.approx(PDF_PAGE_SIZE, abs=0.01)


def test_evaluation_config_checks_cuts_and_plots() -> None:
    from baler_ext.config import config_from_dict
    from baler_ext.errors import ConfigError

    base = {"data": {"input": ["x.parquet"]}}
    cfg = config_from_dict({**base, "evaluation": {"cuts": ["pt > 600"]}}, "test")
    assert cfg.evaluation.cuts == ["pt > 600"] and cfg.evaluation.plots == "summary"
    with pytest.raises(ConfigError, match="not a valid expression"):
        config_from_dict({**base, "evaluation": {"cuts": ["pt >"]}}, "test")
    with pytest.raises(ConfigError, match="plots"):
        config_from_dict({**base, "evaluation": {"plots": "some"}}, "test")
