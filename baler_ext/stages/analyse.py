"""``--mode analyse``: fit the mass peak on the original and the decompressed data.

Both samples are read from disk as a user would read them, the same selection and
mass definition are applied to both (``[analysis]``), and the two binned
maximum-likelihood fits are compared. A fit that fails is reported as a failure
(``analysis.json``/``analysis.md`` say so and the stage exits non-zero), never
as numbers.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from baler_ext.analysis import (
    AnalysisSpec,
    Comparison,
    FitResult,
    analysis_values,
    compare_fits,
    fit_peak,
    write_report,
)
from baler_ext.codec.container import ContainerReader
from baler_ext.config import Config
from baler_ext.errors import ConfigError, FitError
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
        with ContainerReader(container) as reader:
            layout = SourceLayout.from_dict(reader.header["layout"])
        restored = output_path(project, cfg, layout, container)
        require_stage_output(restored, "decompress", project.name,
                             f"decompressed file of {src.name}")
        pairs.append((src, restored))
    return pairs


def _values(paths: list[Path], cfg: Config, spec: AnalysisSpec, tree: str | None) -> np.ndarray:
    columns = spec.required_columns()
    # in a jagged file without an event column, each entry is an event
    events = spec.event_column if spec.variable == "event_combination" else None
    parts = [analysis_values(read_columns(p, "auto", tree, columns, entry_column=events), spec)
             for p in paths]
    return np.concatenate(parts) if parts else np.empty(0)


def _write_failure(out_dir: Path, before: FitResult, error: str, spec: AnalysisSpec) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "analysis.json") as tmp:
        tmp.write_text(json.dumps({"before": before.to_dict(), "after": {"failed": error},
                                   "spec": spec.to_dict()}, indent=1))
    with atomic_path(out_dir / "analysis.md") as tmp:
        tmp.write_text(
            f"# {spec.quantity} before and after compression\n\n"
            f"| sample | mass | width |\n|---|---|---|\n"
            f"| original | {before.mass:.3f} ± {before.mass_err:.3f} | "
            f"{before.width:.3f} ± {before.width_err:.3f} |\n"
            f"| decompressed | fit failed | fit failed |\n\n"
            f"The fit of the decompressed sample failed: {error}\n")


def analyse(project: Project, cfg: Config) -> AnalyseResult:
    """Fit before and after compression and write ``output/analysis/``."""
    spec = cfg.analysis
    if spec is None:
        raise ConfigError(
            f"{cfg.source}: no [analysis] section; add one (see docs/config.md) to fit the "
            "mass peak before and after compression"
        )
    pairs = sample_pairs(project, cfg)
    out_dir = project.dir("analysis")
    before = fit_peak(_values([p[0] for p in pairs], cfg, spec, cfg.data.tree), spec)
    log.info("original: %s = %.3f ± %.3f %s, width %.3f ± %.3f (χ²/ndf %.2f)", spec.quantity,
             before.mass, before.mass_err, spec.unit, before.width, before.width_err,
             before.chi2_ndf)
    restored_tree = cfg.output.tree or cfg.data.tree
    try:
        after = fit_peak(_values([p[1] for p in pairs], cfg, spec, restored_tree), spec)
    except FitError as exc:
        _write_failure(out_dir, before, str(exc), spec)
        raise FitError(f"the fit of the decompressed sample failed ({exc}); see "
                       f"{out_dir / 'analysis.md'}") from None
    comparison = compare_fits(before, after, quantity=spec.quantity)
    paths = write_report(out_dir, before, after, comparison, spec, extra={
        "inputs": [str(p[0]) for p in pairs], "decompressed": [str(p[1]) for p in pairs]})
    return AnalyseResult(before, after, comparison, paths)
