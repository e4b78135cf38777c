r"""Latent probing: what the decoder does along and across the latent space.

:func:`write_probing_plots` encodes rows with a trained model and writes four views to
one folder (``output/evaluation/probing/`` when ``evaluation.latent_probing = true``):

``traversal.png``
    Latent traversal: from the median latent :math:`\tilde z` of the rows, one latent
    dimension :math:`j` at a time is set to ``n_steps`` values between its 2.5 % and
    97.5 % quantiles in the data, the others held at :math:`\tilde z`, and decoded. One
    panel per dimension shows every output column, standardised by the data,
    :math:`(\hat x_c - \bar x_c)/\sigma_c`, against :math:`z_j` — which columns a
    dimension controls (the latent-traversal plots of Higgins et al., β-VAE, ICLR 2017).
``prior_samples.png``
    Decoded samples of the prior, histogrammed against the data per column. For the
    VAE family the prior is the model's :math:`\mathcal N(0, I)`; for the other models
    (whose latent has no prior) it is the Gaussian fitted to the encoded rows,
    :math:`\mathcal N(\hat\mu, \hat\Sigma)`. Latent entries that carry input columns
    verbatim (the conditional VAE's conditions) are taken from randomly drawn data rows,
    i.e. the samples are conditional on the data's conditions.
``pca_samples.png``
    The same for samples along the two leading principal components of the encoded
    rows, :math:`z = \hat\mu + a_1\sqrt{\lambda_1}u_1 + a_2\sqrt{\lambda_2}u_2`,
    :math:`a_k\sim\mathcal N(0,1)` (:func:`~baler_ext.evaluation.plots.pca_2d`): how much
    of the data two directions of the latent generate.
``tsne.png``
    t-SNE (van der Maaten & Hinton, JMLR 9, 2008; scikit-learn's ``TSNE``, perplexity
    30, PCA initialisation) of the latent of at most ``tsne_rows`` rows, coloured like
    the other latent plots. Needs scikit-learn (``pip install 'baler_ext[probing]'``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from baler_ext.errors import ConfigError, InputDataError
from baler_ext.evaluation.plots import pca_2d
from baler_ext.model_store import TrainedModel

log = logging.getLogger(__name__)

TSNE_PERPLEXITY = 30.0


@dataclass
class ProbingResult:
    """What :func:`write_probing_plots` computed and wrote.

    Attributes
    ----------
    paths
        Plot name -> PNG path.
    traversal_grid
        ``(n_dims, n_steps)`` latent values of each traversed dimension.
    traversal
        ``(n_dims, n_steps, n_columns)`` decoded rows in the columns' units.
    prior_latent, prior_decoded
        Latent samples of the prior and their decoded rows.
    pca_latent, pca_decoded
        Latent samples along the two leading principal components and their decoding.
    tsne, tsne_index
        ``(n, 2)`` t-SNE embedding of the subsampled latent, and the rows it embeds.
    prior_kind
        ``"model"`` (:math:`\\mathcal N(0, I)` of a VAE) or ``"fitted"`` (a Gaussian fit).
    """

    paths: dict[str, Path] = field(default_factory=dict)
    traversal_grid: np.ndarray | None = None
    traversal: np.ndarray | None = None
    prior_latent: np.ndarray | None = None
    prior_decoded: np.ndarray | None = None
    pca_latent: np.ndarray | None = None
    pca_decoded: np.ndarray | None = None
    tsne: np.ndarray | None = None
    tsne_index: np.ndarray | None = None
    prior_kind: str = ""


@torch.no_grad()
def _encode(trained: TrainedModel, values: np.ndarray) -> np.ndarray:
    p = next(trained.model.parameters())
    x = torch.as_tensor(trained.normaliser.transform(values), dtype=p.dtype, device=p.device)
    return trained.model.eval().encode(x).cpu().double().numpy()


@torch.no_grad()
def decode(trained: TrainedModel, z: np.ndarray) -> np.ndarray:
    """Latent rows -> decoded rows in the columns' units (constants filled in)."""
    p = next(trained.model.parameters())
    out = trained.model.eval().decode(torch.as_tensor(z, dtype=p.dtype, device=p.device))
    return trained.normaliser.inverse(out.cpu().double().numpy())


def free_dims(trained: TrainedModel) -> list[int]:
    """Latent positions the model learns (not the verbatim copies of input columns)."""
    fixed = set(trained.model.lossless_latent_dims)
    return [j for j in range(trained.model.latent_dim) if j not in fixed]


def traverse(trained: TrainedModel, z: np.ndarray, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode the median latent with each free dimension swept over its central 95 %."""
    dims = free_dims(trained)
    base = np.median(z, axis=0)
    grid = np.stack(
        [
            np.linspace(
                float(np.quantile(z[:, j], 0.025)), float(np.quantile(z[:, j], 0.975)), n_steps
            )
            for j in dims
        ]
    )
    decoded = []
    for k, j in enumerate(dims):
        zz = np.repeat(base[None, :], n_steps, axis=0)
        zz[:, j] = grid[k]
        decoded.append(decode(trained, zz))
    return grid, np.stack(decoded)


def prior_samples(
    trained: TrainedModel, z: np.ndarray, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, str]:
    """``n`` latent samples of the prior (module docstring) and which prior it was."""
    dims = free_dims(trained)
    out = z[rng.integers(0, len(z), n)].copy()  # verbatim (condition) entries from data rows
    if trained.model.annealed_terms:  # VAE family: the model's own N(0, I)
        out[:, dims] = rng.standard_normal((n, len(dims)))
        return out, "model"
    zf = z[:, dims]
    cov = np.atleast_2d(np.cov(zf, rowvar=False))
    out[:, dims] = rng.multivariate_normal(zf.mean(axis=0), cov, size=n, method="eigh")
    return out, "fitted"


def pca_samples(
    trained: TrainedModel, z: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """``n`` latent samples along the two leading principal components of ``z``."""
    dims = free_dims(trained)
    zf = z[:, dims]
    mean, axes, _ = pca_2d(zf)
    sd = ((zf - mean) @ axes.T).std(axis=0)
    out = z[rng.integers(0, len(z), n)].copy()
    out[:, dims] = mean + (rng.standard_normal((n, 2)) * sd) @ axes
    return out


def tsne_embedding(z: np.ndarray, seed: int) -> np.ndarray:
    """2-D t-SNE of ``z`` (scikit-learn); a ConfigError says how to install it."""
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        raise ConfigError(
            "the t-SNE of evaluation.latent_probing needs scikit-learn: "
            "pip install 'baler_ext[probing]'"
        ) from None
    perplexity = min(TSNE_PERPLEXITY, (len(z) - 1) / 3)
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
        z
    )


def write_probing_plots(
    trained: TrainedModel,
    values: np.ndarray,
    out_dir: Path,
    *,
    color: np.ndarray | None = None,
    color_label: str = "",
    seed: int = 0,
    n_steps: int = 9,
    n_samples: int = 5000,
    tsne_rows: int = 2000,
) -> ProbingResult:
    """Encode ``values`` with ``trained`` and write the four probing plots to ``out_dir``.

    Parameters
    ----------
    trained
        The project's trained model and normaliser.
    values
        ``(rows, columns)`` original values of the model's columns (raw units).
    out_dir
        Folder of ``traversal.png``, ``prior_samples.png``, ``pca_samples.png``,
        ``tsne.png``.
    color, color_label
        Per-row values colouring the t-SNE points, and their name.
    seed
        Seed of the samples, the t-SNE subsample and t-SNE itself.
    n_steps
        Points of each traversal.
    n_samples
        Rows decoded from the prior and from the PCA components.
    tsne_rows
        Rows embedded by t-SNE (a random subsample; t-SNE is O(n log n) and slow).

    Returns
    -------
    ProbingResult
        The computed arrays and the paths of the plots.
    """
    if len(values) < 3:
        raise InputDataError(f"latent probing needs at least 3 rows, got {len(values)}")
    if not free_dims(trained):
        raise InputDataError("the model has no learned latent dimension to probe")
    rng = np.random.default_rng(seed)
    z = _encode(trained, values)
    res = ProbingResult()
    res.traversal_grid, res.traversal = traverse(trained, z, n_steps)
    res.prior_latent, res.prior_kind = prior_samples(trained, z, n_samples, rng)
    res.prior_decoded = decode(trained, res.prior_latent)
    res.pca_latent = pca_samples(trained, z, n_samples, rng)
    res.pca_decoded = decode(trained, res.pca_latent)
    pick = np.sort(rng.choice(len(z), min(tsne_rows, len(z)), replace=False))
    res.tsne, res.tsne_index = tsne_embedding(z[pick], seed), pick
    columns = trained.normaliser.columns
    out_dir.mkdir(parents=True, exist_ok=True)
    res.paths["traversal"] = _plot_traversal(res, values, columns, free_dims(trained), out_dir)
    prior_name = "prior N(0, I)" if res.prior_kind == "model" else "Gaussian fitted to the latent"
    res.paths["prior_samples"] = _plot_generated(
        values,
        res.prior_decoded,
        columns,
        f"decoded samples of the {prior_name}",
        out_dir,
        "prior_samples",
    )
    res.paths["pca_samples"] = _plot_generated(
        values,
        res.pca_decoded,
        columns,
        "decoded samples along the 2 leading PCA components",
        out_dir,
        "pca_samples",
    )
    res.paths["tsne"] = _plot_tsne(
        res.tsne, None if color is None else color[pick], color_label, out_dir
    )
    log.info("latent probing plots in %s", out_dir)
    return res


def _grid(n: int) -> tuple[int, int]:
    cols = min(n, 4)
    return (n + cols - 1) // cols, cols


def _plot_traversal(
    res: ProbingResult, values: np.ndarray, columns: list[str], dims: list[int], out_dir: Path
) -> Path:
    from baler_ext.plotting import hep_figure, matplotlib_agg, save_png

    cmap = matplotlib_agg().colormaps["tab20"]
    mean, sd = values.mean(axis=0), values.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    rows, cols = _grid(len(dims))
    traversal_grid, traversal = res.traversal_grid, res.traversal
    if traversal_grid is None or traversal is None:
        raise ValueError("no latent traversal to plot")
    with hep_figure(figsize=(4.2 * cols, 3.4 * rows + 1.2)) as fig:
        axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
        for k, j in enumerate(dims):
            ax = axes[k]
            for c, name in enumerate(columns):
                ax.plot(
                    traversal_grid[k],
                    (traversal[k, :, c] - mean[c]) / sd[c],
                    color=cmap(c % 20),
                    lw=1.5,
                    label=name,
                )
            ax.set_xlabel(f"$z_{{{j}}}$")
            ax.set_ylabel(r"$(\hat x - \bar x)/\sigma$")
        for ax in axes[len(dims) :]:
            ax.set_visible(False)
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(
            handles,
            labels,
            loc="upper center",
            ncol=min(len(columns), 8),
            fontsize=9,
            bbox_to_anchor=(0.5, 1.0),
        )
        fig.suptitle("latent traversal (others at the median latent)", y=1.04)
        return save_png(fig, out_dir, "traversal")


def _plot_generated(
    values: np.ndarray,
    generated: np.ndarray,
    columns: list[str],
    title: str,
    out_dir: Path,
    stem: str,
) -> Path:
    from baler_ext.plotting import (
        ORIGINAL_COLOR,
        RECONSTRUCTED_COLOR,
        axis_label,
        hep_figure,
        save_png,
    )

    rows, cols = _grid(len(columns))
    with hep_figure(figsize=(4.0 * cols, 3.2 * rows + 0.8)) as fig:
        axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
        for c, name in enumerate(columns):
            lo, hi = np.quantile(values[:, c], [0.005, 0.995])
            if not hi > lo:
                lo, hi = lo - 0.5, hi + 0.5
            edges = np.linspace(lo, hi, 41)
            ax = axes[c]
            ax.hist(
                values[:, c],
                edges,
                density=True,
                histtype="step",
                lw=1.8,
                color=ORIGINAL_COLOR,
                label="data",
            )
            ax.hist(
                np.clip(generated[:, c], lo, hi),
                edges,
                density=True,
                histtype="step",
                lw=1.8,
                color=RECONSTRUCTED_COLOR,
                label="generated",
            )
            ax.set_xlabel(axis_label(name))
        for ax in axes[len(columns) :]:
            ax.set_visible(False)
        axes[0].legend(loc="best", fontsize=9)
        fig.suptitle(title + " (out-of-range values in the edge bins)")
        return save_png(fig, out_dir, stem)


def _plot_tsne(embedding: np.ndarray, color: np.ndarray | None, label: str, out_dir: Path) -> Path:
    from baler_ext.plotting import hep_figure, save_png

    with hep_figure(figsize=(7, 6)) as fig:
        ax = fig.subplots()
        pts = ax.scatter(
            embedding[:, 0],
            embedding[:, 1],
            s=4,
            alpha=0.6,
            c=color if color is not None else "#1f77b4",
            cmap="viridis" if color is not None else None,
        )
        if color is not None:
            fig.colorbar(pts, ax=ax, label=label)
        ax.set_xlabel("t-SNE 1")
        ax.set_ylabel("t-SNE 2")
        ax.set_title(f"t-SNE of the latent ({len(embedding)} rows)")
        return save_png(fig, out_dir, "tsne")
