"""``--mode analyse``: fit the mass peak on the original and the decompressed data.

Both samples are read from disk as a user would read them, the same selection and
mass definition are applied to both (``[analysis]``), and the two binned
maximum-likelihood fits are compared. The errors of the shifts come from a paired
bootstrap over events (:mod:`baler_ext.analysis.bootstrap`; ``analysis.event_column``
when the input has it, else rows), and both fits are graded
(:mod:`baler_ext.analysis.quality`). With ``analysis.tagger_score`` set, the ROC of
that score against ``analysis.tagger_truth`` is compared too, on the same
replicas (:mod:`baler_ext.analysis.tagger`). A fit that fails is reported as a
failure (``analysis.json``/``analysis.md`` say so and the stage exits non-zero),
never as numbers.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from baler_ext.analysis import (
    AnalysisSpec,
    Comparison,
    FitResult,
    compare_fits,
    fit_peak,
    write_report,
)
from baler_ext.analysis.bootstrap import (
    FitShifts,
    PairedSample,
    PairedStatistic,
    paired_bootstrap,
)
from baler_ext.analysis.mass import analysis_values_and_keys
from baler_ext.analysis.quality import suggest_shapes
from baler_ext.analysis.tagger import TaggerShifts, tagger_arrays, tagger_verdict
from baler_ext.codec.container import ContainerReader, decode_errors
from baler_ext.config import Config
from baler_ext.console import report
from baler_ext.errors import ConfigError, FitError, InputDataError
from baler_ext.io.layout import SourceLayout
from baler_ext.io.source import read_columns, resolve_inputs
from baler_ext.project import CONTAINER_SUFFIX, Project, atomic_path, require_stage_output
from baler_ext.stages.decompress import output_path

log = logging.getLogger(__name__)


@dataclass
class AnalyseResult:
    """The two fits, their comparison and the report files."""

    before: FitResult
    after: FitResult
    comparison: Comparison
    paths: dict[str, Path]


def sample_pairs(project: Project, cfg: Config) -> list[tuple[Path, Path]]:
    """(original input, decompressed output) for every input file of the project."""
    pairs = []
    for src in resolve_inputs(cfg):
        container = project.dir("compressed") / f"{src.stem}{CONTAINER_SUFFIX}"
        require_stage_output(container, "compress", project.name, f"compressed file of {src.name}")
        with ContainerReader(container) as reader, decode_errors(container):
            layout = SourceLayout.from_dict(reader.header["layout"])
        restored = output_path(project, cfg, layout, container)
        require_stage_output(
            restored, "decompress", project.name, f"decompressed file of {src.name}"
        )
        pairs.append((src, restored))
    return pairs


@dataclass
class _Samples:
    """Both samples' tables (concatenated over files) and the event key of every row."""

    original: pd.DataFrame
    decompressed: pd.DataFrame
    keys: np.ndarray
    unit: str
    paired: bool


def _read_samples(pairs: list[tuple[Path, Path]], cfg: Config, spec: AnalysisSpec) -> _Samples:
    """Read the analysis columns of every file pair and key each row by its event.

    The key is ``analysis.event_column`` (made unique across files) when the input
    has that column, else the row number. Rows are paired only when both files of
    every pair hold the same number of rows.
    """
    columns = spec.required_columns()
    restored_tree = cfg.output.tree or cfg.data.tree
    originals, restored, keys = [], [], []
    offset = 0
    by_event = True
    # in a jagged file without an event column, each entry is an event
    events = spec.event_column if spec.variable == "event_combination" else None
    for src, out in pairs:
        o = read_columns(src, "auto", cfg.data.tree, columns, entry_column=events)
        r = read_columns(out, "auto", restored_tree, columns, entry_column=events)
        if spec.event_column in o.columns or "entry" in o.columns:
            event = o[spec.event_column if spec.event_column in o.columns else "entry"]
            _, key = np.unique(event.to_numpy(), return_inverse=True)
        else:
            try:
                event = read_columns(src, "auto", cfg.data.tree, [spec.event_column])[
                    spec.event_column
                ].to_numpy()
                _, key = np.unique(event, return_inverse=True)
            except InputDataError:
                by_event = False
                key = np.arange(len(o))
        originals.append(o)
        restored.append(r)
        keys.append(key.astype(np.int64) + offset)
        offset += int(key.max(initial=-1)) + 1
    paired = all(len(o) == len(r) for o, r in zip(originals, restored, strict=True))
    if not paired:
        log.warning(
            "the decompressed files hold other rows than the inputs: no paired "
            "bootstrap, shift errors are the quadrature sum of the fit errors"
        )
    unit = f"events ('{spec.event_column}')" if by_event else "rows"
    return _Samples(
        pd.concat(originals, ignore_index=True),
        pd.concat(restored, ignore_index=True),
        np.concatenate(keys) if keys else np.empty(0, np.int64),
        unit,
        paired,
    )


def _write_failure(out_dir: Path, before: FitResult, error: str, spec: AnalysisSpec) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "analysis.json") as tmp:
        tmp.write_text(
            json.dumps(
                {"before": before.to_dict(), "after": {"failed": error}, "spec": spec.to_dict()},
                indent=1,
            )
        )
    with atomic_path(out_dir / "analysis.md") as tmp:
        tmp.write_text(
            f"# {spec.quantity} before and after compression\n\n"
            f"| sample | mass | width |\n|---|---|---|\n"
            f"| original | {before.mass:.3f} ± {before.mass_err:.3f} | "
            f"{before.width:.3f} ± {before.width_err:.3f} |\n"
            f"| decompressed | fit failed | fit failed |\n\n"
            f"The fit of the decompressed sample failed: {error}\n"
        )


def analyse(project: Project, cfg: Config, progress: bool = True) -> AnalyseResult:
    """Fit before and after compression and write ``output/analysis/``.

    Parameters
    ----------
    project, cfg
        The project and its configuration (``[analysis]`` must be set).
    progress
        Show a progress bar for the bootstrap replicas.
    """
    spec = cfg.analysis
    if spec is None:
        raise ConfigError(
            f"{cfg.source}: no [analysis] section; add one (see docs/config.md) to fit the "
            "mass peak before and after compression"
        )
    pairs = sample_pairs(project, cfg)
    out_dir = project.dir("analysis")
    samples = _read_samples(pairs, cfg, spec)
    v_before, k_before = analysis_values_and_keys(samples.original, spec, samples.keys)
    before = fit_peak(v_before, spec)
    log.info(
        "original: %s = %.3f ± %.3f %s, width %.3f ± %.3f (χ²/ndf %.2f, %s)",
        spec.quantity,
        before.mass,
        before.mass_err,
        spec.unit,
        before.width,
        before.width_err,
        before.chi2_ndf,
        before.quality,
    )
    key_after = (
        samples.keys
        if samples.paired
        else np.arange(len(samples.decompressed)) + (int(samples.keys.max(initial=-1)) + 1)
    )
    v_after, k_after = analysis_values_and_keys(samples.decompressed, spec, key_after)
    try:
        after = fit_peak(v_after, spec)
    except FitError as exc:
        _write_failure(out_dir, before, str(exc), spec)
        raise FitError(
            f"the fit of the decompressed sample failed ({exc}); see {out_dir / 'analysis.md'}"
        ) from None

    universe = np.unique(np.r_[samples.keys, key_after])

    def sample(values: np.ndarray, keys: np.ndarray) -> PairedSample:
        return PairedSample(values, np.searchsorted(universe, keys))

    statistics: list[PairedStatistic] = [
        FitShifts(before, after, sample(v_before, k_before), sample(v_after, k_after))
    ]
    tagger_stat: TaggerShifts | None = None
    if spec.tagger_score:
        s_b, t_b, tk_b = tagger_arrays(samples.original, spec, samples.keys)
        s_a, t_a, tk_a = tagger_arrays(samples.decompressed, spec, key_after)
        tagger_stat = TaggerShifts(
            sample(s_b, tk_b), sample(s_a, tk_a), t_b, t_a, spec.tagger_background_rejection
        )
        statistics.append(tagger_stat)
    replicas = spec.bootstrap_replicas if samples.paired else 0
    paired = paired_bootstrap(
        statistics, universe.size, replicas, spec.bootstrap_seed, progress=progress
    )
    method = (
        f"paired bootstrap ({replicas} replicas over {samples.unit}, both samples refitted)"
        if replicas
        else "quadrature sum"
    )
    suggestion = None
    if before.quality != "good":
        found = suggest_shapes(v_before, spec)
        suggestion = found.text() if found is not None else None
    comparison = compare_fits(
        before,
        after,
        quantity=spec.quantity,
        paired=paired,
        error_method=method,
        suggestion=suggestion,
    )
    extra: dict[str, object] = {
        "inputs": [str(p[0]) for p in pairs],
        "decompressed": [str(p[1]) for p in pairs],
    }
    tagger = None
    if tagger_stat is not None:
        tagger = tagger_verdict(
            paired["auc"].to_dict(), paired["signal_efficiency"].to_dict(), spec
        )
        report(tagger)
        extra["tagger"] = {
            "verdict": tagger,
            "signal_rows": tagger_stat.n_signal,
            "background_rows": tagger_stat.n_background,
        }
    paths = write_report(out_dir, before, after, comparison, spec, extra=extra, notes=tagger)
    report(f"verdict: {comparison.verdict()}")
    return AnalyseResult(before, after, comparison, paths)
