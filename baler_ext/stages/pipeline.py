"""``--mode all``: the configured stages in order."""

from __future__ import annotations

import logging
import time
from typing import Any

from baler_ext.config import Config
from baler_ext.project import Project
from baler_ext.stages.analyse import analyse
from baler_ext.stages.compress import compress
from baler_ext.stages.decompress import decompress
from baler_ext.stages.evaluate import evaluate
from baler_ext.stages.train import train

log = logging.getLogger(__name__)


def run_all(project: Project, cfg: Config, results: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run train -> compress -> decompress -> evaluate (-> analyse when ``[analysis]`` is set).

    Returns each stage's result by name; ``results``, when given, is filled as
    each stage finishes, so a caller keeps the finished stages if a later one fails.
    """
    results = {} if results is None else results
    stages: list[tuple[str, Any]] = [
        ("train", train),
        ("compress", compress),
        ("decompress", decompress),
        ("evaluate", evaluate),
    ]
    if cfg.analysis is not None:
        stages.append(("analyse", analyse))
    for name, stage in stages:
        t0 = time.perf_counter()
        results[name] = stage(project, cfg)
        log.info("stage %s done in %.1f s", name, time.perf_counter() - t0)
    return results
