"""What the user sees in the terminal: logs on stderr, reports on stdout.

* **Logs** (progress, decisions, warnings) go through :mod:`logging` to stderr, one
  line each, prefixed ``baler_ext: LEVEL:``. ``-q`` keeps warnings and errors only,
  ``-v`` adds debug lines. While a command runs, :func:`terminal` routes them through
  tqdm, so that a log line never lands in the middle of a progress bar.
* **Reports** (``--mode info``, the evaluation's summary table, the analysis verdict)
  are the result of a command: :func:`report` writes them to stdout whatever the log
  level, so ``baler_ext ... --mode info > info.txt`` keeps them and ``-q`` still shows
  them.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

#: third-party loggers that talk at INFO about their own set-up (numexpr: "NumExpr
#: defaulting to N threads"; matplotlib: "Substituting symbol ... from STIXGeneral")
NOISY_LOGGERS = ("numexpr", "matplotlib")

_seen: set[tuple[str, str]] = set()


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    """Send log records to stderr at INFO (``verbose``: DEBUG, ``quiet``: WARNING).

    Replaces a handler installed by an earlier call, so calling it twice never
    prints a line twice; silences the INFO chatter of :data:`NOISY_LOGGERS`
    unless ``verbose``.
    """
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_baler_ext", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("baler_ext: %(levelname)s: %(message)s"))
    handler._baler_ext = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)


@contextlib.contextmanager
def terminal() -> Iterator[None]:
    """Within the block, log lines are written above the progress bars, never into them."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm():
        yield


def report(text: str) -> None:
    """Write a report (a result the user asked for) to stdout, above any progress bar."""
    from tqdm import tqdm

    tqdm.write(text, file=sys.stdout)
    sys.stdout.flush()


def log_once(logger: logging.Logger, level: int, msg: str, *args: object) -> None:
    """Log ``msg % args`` once per process: a fact about a file that several stages of
    one command rediscover (``--mode all`` opens each input in train and compress)."""
    key = (logger.name, msg % args)
    if key in _seen:
        return
    _seen.add(key)
    logger.log(level, msg, *args)
