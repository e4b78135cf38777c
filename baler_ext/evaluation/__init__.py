"""Evaluation of a reconstruction: per-column fidelity metrics, bounds and plots.

Importing this package does not import matplotlib; the plot functions import it
(with the ``Agg`` backend) on their first call.

Typical use::

    from baler_ext.evaluation import evaluate_tables, check_bounds, summary_table, to_json

    metrics = evaluate_tables(original, reconstructed, columns, bounds={"pt": ("rel", 1e-3)})
    log.info("\\n%s", summary_table(metrics))
    to_json(metrics, project / "evaluation" / "metrics.json")
    check_bounds(metrics)  # raises BoundViolationError
    write_report(original, reconstructed, columns, project / "evaluation", metrics=metrics)
"""

from baler_ext.evaluation.metrics import (
    BOUND_KINDS,
    DEFAULT_RESPONSE_EPS_FRAC,
    QUANTILE_LEVELS,
    check_bounds,
    column_metrics,
    evaluate_tables,
    jsonable,
    quantile_key,
    summary_table,
    to_json,
    top_anomalies,
)
from baler_ext.evaluation.plots import (
    format_bytes,
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

__all__ = [
    "BOUND_KINDS",
    "DEFAULT_RESPONSE_EPS_FRAC",
    "QUANTILE_LEVELS",
    "check_bounds",
    "column_metrics",
    "evaluate_tables",
    "format_bytes",
    "jsonable",
    "pca_2d",
    "plot_anomaly_scores",
    "plot_compression",
    "plot_correlations",
    "plot_histogram",
    "plot_latent_corner",
    "plot_latent_pca",
    "plot_residuals",
    "plot_training_history",
    "quantile_key",
    "robust_edges",
    "summary_table",
    "to_json",
    "top_anomalies",
    "write_pdf",
    "write_report",
]
