"""``--mode all``: the configured stages in order."""

from __future__ import annotations

import logging
import time
from typing import Any

from baler_ext.config import Config
from baler_ext.project import Project
from baler_ext.stages.compress import compress
from baler_ext.stages.decompress import decompress
from baler_ext.stages.train import train

log = logging.getLogger(__name__)


def run_all(project: Project, cfg: Config) -> dict[str, Any]:
    """Run train -> compress -> decompress; return each stage's result and time."""
    results: dict[str, Any] = {}
    for name, stage in (("train", train), ("compress", compress), ("decompress", decompress)):
        t0 = time.perf_counter()
        results[name] = stage(project, cfg)
        log.info("stage %s done in %.1f s", name, time.perf_counter() - t0)
    return results
