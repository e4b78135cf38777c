"""Physics-impact analysis: fit a mass peak before and after compression and compare.

Typical use by the ``analyse`` stage::

    from baler_ext.analysis import AnalysisSpec, analysis_values, fit_peak, compare_fits
    from baler_ext.analysis import write_report

    spec = AnalysisSpec.from_dict(config["analysis"])
    before = fit_peak(analysis_values(original_df, spec), spec)
    after = fit_peak(analysis_values(decompressed_df, spec), spec)
    comparison = compare_fits(before, after, quantity=spec.quantity)
    write_report(project / "analysis", before, after, comparison, spec)
    log.info(comparison.verdict())  # compare_fits logs it too

A failed fit raises :class:`baler_ext.errors.FitError`; a bad configuration
raises :class:`baler_ext.errors.ConfigError`.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from baler_ext.analysis.compare import (
        Comparison,
        compare_fits,
        markdown_report,
        plot_comparison,
        write_report,
    )
    from baler_ext.analysis.fit import FitResult, estimate_start, fit_peak, histogram
    from baler_ext.analysis.mass import (
        analysis_values,
        compute_mass,
        event_combination_mass,
        invariant_mass,
        ptetaphim_to_pxpypze,
    )
    from baler_ext.analysis.selection import (
        apply_selection,
        cut_columns,
        evaluate_cut,
        selection_mask,
        validate_cut,
    )
    from baler_ext.analysis.shapes import (
        BackgroundShape,
        PeakShape,
        background_names,
        get_background,
        get_peak,
        peak_names,
        register_background,
        register_peak,
    )
    from baler_ext.analysis.spec import AnalysisSpec

#: public name -> the submodule that defines it; imported on first use (PEP 562), so that
#: ``import baler_ext.analysis.selection`` (config validation) does not import iminuit,
#: scipy and matplotlib through this package
_EXPORTS: dict[str, str] = {
    "AnalysisSpec": "spec",
    "BackgroundShape": "shapes",
    "Comparison": "compare",
    "FitResult": "fit",
    "PeakShape": "shapes",
    "analysis_values": "mass",
    "apply_selection": "selection",
    "background_names": "shapes",
    "compare_fits": "compare",
    "compute_mass": "mass",
    "cut_columns": "selection",
    "evaluate_cut": "selection",
    "estimate_start": "fit",
    "event_combination_mass": "mass",
    "fit_peak": "fit",
    "get_background": "shapes",
    "get_peak": "shapes",
    "histogram": "fit",
    "invariant_mass": "mass",
    "markdown_report": "compare",
    "peak_names": "shapes",
    "plot_comparison": "compare",
    "ptetaphim_to_pxpypze": "mass",
    "register_background": "shapes",
    "register_peak": "shapes",
    "selection_mask": "selection",
    "validate_cut": "selection",
    "write_report": "compare",
}

__all__ = [
    "AnalysisSpec",
    "BackgroundShape",
    "Comparison",
    "FitResult",
    "PeakShape",
    "analysis_values",
    "apply_selection",
    "background_names",
    "compare_fits",
    "compute_mass",
    "cut_columns",
    "estimate_start",
    "evaluate_cut",
    "event_combination_mass",
    "fit_peak",
    "get_background",
    "get_peak",
    "histogram",
    "invariant_mass",
    "markdown_report",
    "peak_names",
    "plot_comparison",
    "ptetaphim_to_pxpypze",
    "register_background",
    "register_peak",
    "selection_mask",
    "validate_cut",
    "write_report",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'baler_ext.analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"baler_ext.analysis.{module}"), name)
    globals()[name] = value
    return value
