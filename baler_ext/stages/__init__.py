"""Pipeline stages: each a plain function ``(project, config) -> result``.

:data:`STAGES` maps a ``--mode`` name to its function and one-line help; the CLI
imports a stage's module only when it runs, so ``--help`` stays fast.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StageSpec:
    """A mode of the CLI: where its function lives and what it does."""

    module: str
    function: str
    help: str
    needs_config: bool = True
    #: validate ``[analysis]`` when the config is loaded; False for commands that never
    #: fit, so that they do not import the analysis package (iminuit, scipy, pandas)
    validates_analysis: bool = True

    def load(self) -> Callable[..., Any]:
        return getattr(importlib.import_module(self.module), self.function)


STAGES: dict[str, StageSpec] = {
    "new_project": StageSpec(
        "baler_ext.stages.new_project",
        "new_project",
        "create projects/NAME/config.toml and the output tree",
        needs_config=False,
    ),
    "train": StageSpec(
        "baler_ext.stages.train",
        "train",
        "fit the normaliser and train the autoencoder on the inputs",
    ),
    "compress": StageSpec(
        "baler_ext.stages.compress",
        "compress",
        "compress each input file into output/compressed/*.baler",
    ),
    "decompress": StageSpec(
        "baler_ext.stages.decompress",
        "decompress",
        "restore each compressed file in the input's format",
    ),
    "evaluate": StageSpec(
        "baler_ext.stages.evaluate",
        "evaluate",
        "compare inputs with their decompressed files: output/evaluation/",
    ),
    "analyse": StageSpec(
        "baler_ext.stages.analyse",
        "analyse",
        "fit the mass peak before and after compression ([analysis])",
    ),
    "scan": StageSpec(
        "baler_ext.stages.scan",
        "scan",
        "train every combination of the [scan] grid; rank them in output/scan/",
    ),
    "search": StageSpec(
        "baler_ext.stages.search",
        "search",
        "Bayesian search (optuna TPE) over [search.space]; ranked in output/search/",
    ),
    "anomaly": StageSpec(
        "baler_ext.stages.anomaly",
        "anomaly",
        "score [anomaly] test files against a reference sample: "
        "distributions, ROC/AUC, top rows in output/anomaly/",
    ),
    "export": StageSpec(
        "baler_ext.stages.export",
        "export",
        "write the encoder and decoder as TorchScript to output/export/",
    ),
    "info": StageSpec(
        "baler_ext.stages.info",
        "info",
        "sizes by section, ratios, bounds and max errors of each compressed file",
        validates_analysis=False,
    ),
    "all": StageSpec(
        "baler_ext.stages.pipeline",
        "run_all",
        "train, compress, decompress, evaluate (and analyse when configured)",
    ),
}
