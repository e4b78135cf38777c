"""Every plot function writes a non-empty PNG; write_pdf writes one page per input.

Small tables keep these fast. Pages are counted with a regex over the PDF bytes
("/Type /Page" not followed by a letter, so "/Type /Pages" is not counted).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from baler_ext.errors import InputDataError
from baler_ext.evaluation import (
    evaluate_tables,
    pca_2d,
    plot_anomaly_scores,
    plot_compression,
    plot_correlations,
    plot_histogram,
    plot_latent_corner,
    plot_latent_pca,
    plot_residuals,
    plot_training_history,
    robust_edges,
    write_pdf,
    write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PAGE = re.compile(rb"/Type\s*/Page(?![A-Za-z])")
N = 1_500


def assert_png(path: Path) -> None:
    assert path.suffix == ".png" and path.is_file()
    assert path.stat().st_size > 1024
    assert path.read_bytes()[:8] == PNG_MAGIC


def open_pyplot_figures() -> int:
    from matplotlib._pylab_helpers import Gcf

    return Gcf.get_num_fig_managers()


@pytest.fixture(scope="module")
def tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(1)
    original = pd.DataFrame(
        {
            "Jet_pt": rng.exponential(100.0, N) + 200.0,
            "eta": rng.normal(0.0, 1.2, N),
            "count": rng.integers(0, 40, N),
            "flag": (rng.uniform(size=N) < 0.8).astype(np.int32),
            "frac": np.where(rng.uniform(size=N) < 0.1, 0.0, rng.uniform(0.0, 1.0, N)),
        }
    )
    noise = rng.normal(0.0, 0.01, size=original.shape) * original.std().to_numpy()
    reconstructed = original + noise
    return original, reconstructed


@pytest.fixture(scope="module")
def metrics(tables: tuple[pd.DataFrame, pd.DataFrame]) -> dict:
    original, reconstructed = tables
    return evaluate_tables(original, reconstructed, list(original.columns))


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("plots")


@pytest.fixture(scope="module")
def history_csv(out: Path) -> Path:
    epochs = np.arange(1, 31)
    path = out / "history.csv"
    pd.DataFrame(
        {
            "epoch": epochs,
            "train_loss": 1.0 / epochs,
            "val_loss": 1.2 / epochs + 0.01 * (epochs > 20),
            "kl_term": 0.1 * np.exp(-epochs / 10),
            "lr": 1e-3 * 0.9**epochs,
        }
    ).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("column", ["Jet_pt", "count", "flag", "frac"])
def test_histogram_and_residual_pngs(
    tables: tuple[pd.DataFrame, pd.DataFrame], out: Path, column: str
) -> None:
    original, reconstructed = tables
    before = open_pyplot_figures()
    h = plot_histogram(original[column], reconstructed[column], column, out)
    r = plot_residuals(original[column], reconstructed[column], column, out)
    assert h.name == f"hist_{column}.png" and r.name == f"residual_{column}.png"
    assert_png(h)
    assert_png(r)
    assert open_pyplot_figures() == before


def test_degenerate_columns_still_plot(out: Path) -> None:
    const = np.full(200, 3.0)
    assert_png(plot_histogram(const, const, "const", out, logy=True))
    assert_png(plot_residuals(const, const, "const", out))  # all residuals exactly 0
    zeros = np.zeros(200)
    assert_png(plot_residuals(zeros, zeros + 1e-3, "zeros", out, filename="zeros_custom"))
    assert (out / "zeros_custom.png").is_file()


def test_robust_edges_use_percentiles_of_the_original() -> None:
    x = np.concatenate([np.linspace(0.0, 1.0, 100_000), [1e9, -1e9]])  # two huge outliers
    edges = robust_edges(x, bins=10, percentiles=(0.1, 99.9))
    assert edges[0] == pytest.approx(np.percentile(x, 0.1))
    assert edges[-1] == pytest.approx(np.percentile(x, 99.9))
    assert edges.size == 11
    ints = robust_edges(np.array([0, 1, 1, 2, 5]), bins=60, percentiles=(0, 100))
    np.testing.assert_array_equal(ints, np.arange(-0.5, 6.0, 1.0))


def test_correlation_png(metrics: dict, out: Path) -> None:
    corr = metrics["correlation"]
    assert_png(plot_correlations(corr["original"], corr["reconstructed"], metrics["columns"], out))
    with pytest.raises(InputDataError):
        plot_correlations(corr["original"], corr["reconstructed"], ["a"], out)


def test_anomaly_png(metrics: dict, out: Path) -> None:
    scores = metrics["anomaly_scores"].copy()
    assert_png(plot_anomaly_scores(scores, out))
    scores[:3] = [50.0, np.inf, 0.0]
    assert_png(plot_anomaly_scores(scores, out, logx=True, filename="anomaly_log"))


def test_latent_pngs(tables: tuple[pd.DataFrame, pd.DataFrame], out: Path) -> None:
    original, _ = tables
    rng = np.random.default_rng(2)
    latent = rng.normal(size=(N, 4)) @ rng.normal(size=(4, 4))
    corner = plot_latent_corner(
        latent, out, color=original["flag"], color_label="flag", max_dims=3, max_points=500
    )
    pca = plot_latent_pca(latent, out, color=original["Jet_pt"], color_label="Jet_pt")
    assert_png(corner)
    assert_png(pca)
    assert_png(plot_latent_pca(latent[:, 0], out, filename="pca_1d"))  # one latent dimension
    with pytest.raises(InputDataError):
        plot_latent_pca(latent, out, color=np.zeros(3))


def test_pca_axes_match_numpy_svd() -> None:
    rng = np.random.default_rng(4)
    z = rng.normal(size=(5_000, 3)) * [5.0, 1.0, 0.1]
    mean, axes, explained = pca_2d(z)
    zc = z - z.mean(axis=0)
    _, s, vt = np.linalg.svd(zc, full_matrices=False)
    np.testing.assert_allclose(np.abs(axes), np.abs(vt[:2]), atol=1e-8)
    np.testing.assert_allclose(explained, (s[:2] ** 2) / np.sum(s**2), rtol=1e-10)
    np.testing.assert_allclose(mean, z.mean(axis=0))


def test_compression_png(out: Path) -> None:
    sizes = {"header": 256, "weights": 120_000, "latent": 2_000_000, "corrections": 50_000}
    ratios = {"vs raw float64": 9.7, "vs parquet+zstd": 2.4}
    assert_png(plot_compression(sizes, ratios, out))
    assert_png(plot_compression(sizes, {}, out, filename="compression_sizes_only"))
    with pytest.raises(InputDataError):
        plot_compression({"x": -1}, {}, out)


def test_training_history_png(history_csv: Path, out: Path) -> None:
    assert_png(plot_training_history(history_csv, out))
    no_lr = out / "no_lr.csv"
    pd.DataFrame({"epoch": [0, 1, 2], "loss": [0.5, 0.0, -0.1]}).to_csv(no_lr, index=False)
    assert_png(plot_training_history(no_lr, out, filename="history_linear"))
    bad = out / "bad.csv"
    pd.DataFrame({"step": [0, 1], "loss": [1.0, 0.5]}).to_csv(bad, index=False)
    with pytest.raises(InputDataError, match="'epoch'"):
        plot_training_history(bad, out)


def test_write_pdf_has_one_page_per_input(out: Path) -> None:
    from matplotlib.figure import Figure

    pngs = sorted(out.glob("*.png"))[:3]
    assert len(pngs) == 3
    fig = Figure()
    fig.add_subplot().plot([1, 2, 3])
    pdf = write_pdf([*pngs, fig], out / "pages.pdf")
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF")
    assert len(PAGE.findall(data)) == 4
    assert not list(out.glob(".pages.pdf*"))  # temp file moved into place
    with pytest.raises(InputDataError):
        write_pdf([out / "missing.png"], out / "x.pdf")
    with pytest.raises(ValueError):
        write_pdf([], out / "x.pdf")


def test_write_report(
    tables: tuple[pd.DataFrame, pd.DataFrame], metrics: dict, history_csv: Path, tmp_path: Path
) -> None:
    original, reconstructed = tables
    cols = ["Jet_pt", "flag"]
    report = write_report(
        original,
        reconstructed,
        cols,
        tmp_path,
        metrics=metrics,
        latent=np.random.default_rng(0).normal(size=(N, 2)),
        latent_color=original["flag"],
        latent_color_label="flag",
        sizes={"a": 10, "b": 20},
        ratios={"r": 3.0},
        history_csv=history_csv,
    )
    # compression, history, correlation, anomaly, corner, pca + 2 per column
    assert len(report["pngs"]) == 6 + 2 * len(cols)
    for p in report["pngs"]:
        assert_png(p)
    assert len(PAGE.findall(report["pdf"].read_bytes())) == len(report["pngs"])


def test_importing_does_not_import_matplotlib_and_plots_use_agg() -> None:
    code = (
        "import sys\n"
        "import baler_ext.evaluation, baler_ext.plotting\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported eagerly'\n"
        "from baler_ext.plotting import matplotlib_agg\n"
        "assert matplotlib_agg().get_backend().lower() == 'agg'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_write_report_reuses_a_current_history_plot(
    tables: tuple[pd.DataFrame, pd.DataFrame], metrics: dict, history_csv: Path, tmp_path: Path
) -> None:
    """A plot of the history drawn before (train's loss.png) is copied, unless it is stale."""
    import os

    original, reconstructed = tables
    drawn = plot_training_history(history_csv, tmp_path / "model", filename="loss")
    assert drawn.stat().st_mtime >= history_csv.stat().st_mtime

    def report(out: Path, png: Path) -> Path:
        write_report(
            original,
            reconstructed,
            ["Jet_pt"],
            out,
            metrics=metrics,
            history_csv=history_csv,
            history_png=png,
            plots="summary",
            progress=False,
        )
        return out / "training_history.png"

    assert report(tmp_path / "fresh", drawn).read_bytes() == drawn.read_bytes()
    stale = tmp_path / "stale.png"
    stale.write_bytes(PNG_MAGIC + b"\0" * 2048)
    before = history_csv.stat().st_mtime - 10
    os.utime(stale, (before, before))
    again = report(tmp_path / "stale", stale)
    assert_png(again)
    assert again.read_bytes() != stale.read_bytes()  # drawn again from the CSV
    assert report(tmp_path / "missing", tmp_path / "none.png").is_file()
