"""``--mode anomaly``: score a test sample against a reference sample with the trained model.

Both samples are read with the project's ``[data]`` selection and passed through the
trained autoencoder (encode, decode; no file is compressed). Each row gets the
reconstruction-error score of :mod:`baler_ext.evaluation.anomaly`, on the scale of the
**reference** sample's column σ. Written to ``output/anomaly/``::

    anomaly.json    counts, score quantiles of both samples, the reference's 99 %
                    quantile and the fraction of test rows above it, AUC (with truth),
                    the top-k test rows
    anomaly.md      the same as a short report
    top_k.csv       the top-k test rows: file, row, score, truth, values, reconstruction
    scores.png      reference and test score distributions overlaid (log scale); with
                    truth, the test's normal and anomalous rows drawn apart too
    roc.png         ROC curve with its AUC (only with ``anomaly.truth``)
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from baler_ext.config import Config
from baler_ext.errors import ConfigError, InputDataError
from baler_ext.evaluation.anomaly import anomaly_scores, reference_sigma, roc_auc, roc_curve
from baler_ext.evaluation.metrics import jsonable, top_anomalies
from baler_ext.io.source import Source, read_columns, resolve_inputs
from baler_ext.project import Project, atomic_path
from baler_ext.stages.group_plan import refuse_whole_file

log = logging.getLogger(__name__)

QUANTILES = (0.5, 0.9, 0.99, 0.999)


@dataclasses.dataclass
class Sample:
    """The selected columns of some files, their reconstruction and per-row origin."""

    values: np.ndarray
    restored: np.ndarray
    files: list[str]
    rows: np.ndarray  # row number within its file


def _paths(cfg: Config, items: list[str], key: str) -> list[Path]:
    try:
        return resolve_inputs(
            dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, input=items))
        )
    except InputDataError as exc:
        raise InputDataError(f"anomaly.{key}: {exc}") from None


def read_sample(paths: list[Path], cfg: Config, trained: Any) -> Sample:
    """Read and reconstruct ``paths`` with the trained model (columns must match it)."""
    from baler_ext.stages.train import reconstruct

    parts, files, rows = [], [], []
    for path in paths:
        src = Source(path, cfg.data)
        if src.columns != trained.normaliser.columns:
            raise InputDataError(
                f"{path}: columns {src.columns} differ from the trained "
                f"model's {trained.normaliser.columns}"
            )
        v = src.read_values()
        parts.append(v)
        files += [path.name] * len(v)
        rows.append(np.arange(len(v)))
    values = np.concatenate(parts)
    return Sample(
        values, reconstruct(trained.model, trained.normaliser, values), files, np.concatenate(rows)
    )


def read_truth(paths: list[Path], cfg: Config, column: str, n_rows: int) -> np.ndarray:
    """The truth flag of every test row (nonzero = anomalous)."""
    flags = [
        read_columns(p, cfg.data.format, cfg.data.tree, [column])[column].to_numpy() for p in paths
    ]
    truth = np.concatenate(flags) != 0
    if truth.size != n_rows:
        raise InputDataError(
            f"anomaly.truth '{column}' has {truth.size} values for {n_rows} "
            "scored rows (rows dropped by data.nan_policy?)"
        )
    return truth


def anomaly(project: Project, cfg: Config) -> dict[str, Any]:
    """Score ``anomaly.test`` against ``anomaly.reference`` and write the report.

    Returns
    -------
    dict
        What ``anomaly.json`` holds (AUC only with ``anomaly.truth``).
    """
    from baler_ext.model_store import load_project_model

    spec = cfg.anomaly
    if spec is None or not spec.test:
        raise ConfigError(
            'no [anomaly] test file; add [anomaly] test = "test.parquet" (see docs/anomaly.md)'
        )
    refuse_whole_file(cfg, "anomaly")
    trained = load_project_model(project)
    ref_paths = _paths(cfg, spec.reference or cfg.data.input, "reference")
    test_paths = _paths(cfg, spec.test, "test")
    ref, test = read_sample(ref_paths, cfg, trained), read_sample(test_paths, cfg, trained)
    sigma = reference_sigma(ref.values)
    s_ref = anomaly_scores(ref.values, ref.restored, sigma)
    s_test = anomaly_scores(test.values, test.restored, sigma)
    cut = float(np.quantile(s_ref, 0.99))
    result: dict[str, Any] = {
        "reference": {
            "files": [str(p) for p in ref_paths],
            "rows": len(s_ref),
            "quantiles": {str(q): float(np.quantile(s_ref, q)) for q in QUANTILES},
        },
        "test": {
            "files": [str(p) for p in test_paths],
            "rows": len(s_test),
            "quantiles": {str(q): float(np.quantile(s_test, q)) for q in QUANTILES},
        },
        "columns": trained.normaliser.columns,
        "reference_sigma": dict(zip(trained.normaliser.columns, sigma.tolist(), strict=True)),
        "reference_q99": cut,
        "test_fraction_above_reference_q99": float(np.mean(s_test > cut)),
    }
    truth = None
    if spec.truth is not None:
        truth = read_truth(test_paths, cfg, spec.truth, len(s_test))
        result["truth"] = {
            "column": spec.truth,
            "anomalous": int(truth.sum()),
            "auc": roc_auc(s_test, truth),
            "efficiency_at_reference_q99": float(np.mean(s_test[truth] > cut)),
            "false_positive_rate_at_reference_q99": float(np.mean(s_test[~truth] > cut)),
        }
    cols = trained.normaliser.columns
    top = top_anomalies(
        pd.DataFrame(test.values, columns=cols),
        pd.DataFrame(test.restored, columns=cols),
        s_test,
        spec.top_k,
    )
    for item in top:
        item["file"], item["file_row"] = test.files[item["row"]], int(test.rows[item["row"]])
        if truth is not None:
            item["truth"] = bool(truth[item["row"]])
    result["top_k"] = top
    out = project.dir("anomaly")
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "anomaly.json") as tmp:
        tmp.write_text(json.dumps(jsonable(result), indent=1))
    write_top_csv(top, cols, out / "top_k.csv")
    plot_scores(s_ref, s_test, truth, spec.bins, cut, out)
    if truth is not None:
        plot_roc(s_test, truth, result["truth"]["auc"], out)
    write_markdown(result, out / "anomaly.md")
    if truth is not None:
        log.info(
            "anomaly: AUC = %.4f on %d test rows (%d anomalous)",
            result["truth"]["auc"],
            len(s_test),
            result["truth"]["anomalous"],
        )
    log.info(
        "anomaly: %.2f %% of test rows above the reference's 99 %% quantile; report in %s",
        100 * result["test_fraction_above_reference_q99"],
        out,
    )
    return result


def write_top_csv(top: list[dict[str, Any]], columns: list[str], path: Path) -> None:
    """The top-k rows as CSV: rank, file, row, score, truth, then value and reconstruction."""
    rows = []
    for item in top:
        row = {
            "rank": item["rank"],
            "file": item["file"],
            "row": item["file_row"],
            "score": item["score"],
            "truth": item.get("truth", ""),
        }
        for c in columns:
            row[c] = item["original"][c]
            row[f"{c}_reconstructed"] = item["reconstructed"][c]
        rows.append(row)
    with atomic_path(path) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)


def plot_scores(
    s_ref: np.ndarray,
    s_test: np.ndarray,
    truth: np.ndarray | None,
    bins: int,
    cut: float,
    out: Path,
) -> Path:
    """Reference and test score distributions, unit area, on a log10 score axis."""
    from baler_ext.plotting import ORIGINAL_COLOR, RECONSTRUCTED_COLOR, hep_figure, save_png

    finite = np.concatenate([s_ref, s_test])
    finite = finite[np.isfinite(finite) & (finite > 0)]
    lo, hi = np.log10(finite.min()), np.log10(finite.max())
    edges = np.linspace(lo, hi + 1e-9, bins + 1)

    def logs(s: np.ndarray) -> np.ndarray:
        return np.log10(np.clip(s[np.isfinite(s)], 10**lo, None))

    with hep_figure(figsize=(8, 5.5)) as fig:
        ax = fig.subplots()
        bins = edges.tolist()
        ax.hist(
            logs(s_ref),
            bins,
            density=True,
            histtype="step",
            lw=2,
            color=ORIGINAL_COLOR,
            label=f"reference ({len(s_ref)} rows)",
        )
        ax.hist(
            logs(s_test),
            bins,
            density=True,
            histtype="step",
            lw=2,
            color=RECONSTRUCTED_COLOR,
            label=f"test ({len(s_test)} rows)",
        )
        if truth is not None:
            for sel, name, style in (
                (~truth, "test, normal", ":"),
                (truth, "test, anomalous", "--"),
            ):
                ax.hist(
                    logs(s_test[sel]),
                    bins,
                    density=True,
                    histtype="step",
                    ls=style,
                    color=RECONSTRUCTED_COLOR,
                    label=f"{name} ({int(sel.sum())})",
                )
        ax.axvline(np.log10(cut), color="0.5", lw=1, label="reference 99 % quantile")
        ax.set_yscale("log")
        bottom, top = ax.get_ylim()
        ax.set_ylim(bottom, top * 30)  # headroom: the legend stays above the curves
        ax.set_xlabel(r"$\log_{10}$ score  (mean of (residual / reference $\sigma$)$^2$)")
        ax.set_ylabel("density (unit area)")
        ax.legend(loc="upper right", fontsize=10)
        return save_png(fig, out, "scores")


def plot_roc(scores: np.ndarray, truth: np.ndarray, auc: float, out: Path) -> Path:
    """ROC curve (efficiency vs false-positive rate) with its AUC."""
    from baler_ext.plotting import RECONSTRUCTED_COLOR, hep_figure, save_png

    fpr, tpr, _ = roc_curve(scores, truth)
    with hep_figure(figsize=(6, 6)) as fig:
        ax = fig.subplots()
        ax.plot(fpr, tpr, color=RECONSTRUCTED_COLOR, lw=2, label=f"autoencoder, AUC = {auc:.3f}")
        ax.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1, label="random, AUC = 0.5")
        ax.set_xlabel("false-positive rate (normal test rows flagged)")
        ax.set_ylabel("efficiency (anomalous test rows flagged)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.legend(loc="lower right")
        return save_png(fig, out, "roc")


def write_markdown(result: dict[str, Any], path: Path) -> None:
    """A short report: samples, quantiles, AUC and the top rows."""
    lines = [
        "# Anomaly scores against the reference sample",
        "",
        f"- reference: {result['reference']['rows']} rows "
        f"({', '.join(Path(f).name for f in result['reference']['files'])})",
        f"- test: {result['test']['rows']} rows "
        f"({', '.join(Path(f).name for f in result['test']['files'])})",
        f"- reference 99 % quantile of the score: {result['reference_q99']:.4g}; test rows "
        f"above it: {100 * result['test_fraction_above_reference_q99']:.2f} %",
    ]
    if "truth" in result:
        t = result["truth"]
        lines += [
            f"- truth `{t['column']}`: {t['anomalous']} anomalous rows; **AUC = "
            f"{t['auc']:.4f}**; at the reference 99 % quantile: efficiency "
            f"{100 * t['efficiency_at_reference_q99']:.1f} %, false-positive rate "
            f"{100 * t['false_positive_rate_at_reference_q99']:.2f} %"
        ]
    lines += ["", "| rank | file | row | score | truth |", "|---|---|---|---|---|"]
    lines += [
        f"| {i['rank']} | {i['file']} | {i['file_row']} | {i['score']:.4g} | {i.get('truth', '')} |"
        for i in result["top_k"]
    ]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
