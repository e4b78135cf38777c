r"""``--mode search``: Bayesian hyper-parameter search with optuna's TPE sampler.

The ``[search]`` section holds the space, written like the ``[scan]`` grid::

    [search]
    trials = 20
    metric = "rms_sigma"            # as scan.metric
    [search.space]
    "training.learning_rate" = {low = 1e-4, high = 1e-2, log = true}
    "model.latent_dim" = {low = 2, high = 8}          # integers: both bounds integers
    "training.loss" = ["mse", "l1_mean", "l1_sum"]   # choices

Each trial draws a point with the Tree-structured Parzen Estimator (Bergstra et al.,
"Algorithms for Hyper-Parameter Optimization", NeurIPS 2011; optuna: Akiba et al.,
KDD 2019, arXiv:1907.10902): after ``startup_trials`` random draws it models
:math:`p(\theta | y < y^*)` and :math:`p(\theta | y \ge y^*)` with Parzen
estimators and proposes the :math:`\theta` maximising their ratio. The point is
trained (and measured) like a scan run, in ``output/search/trial_NNNN/``, and
scored by the same metric in physical units (:data:`~baler_ext.stages.scan.METRICS`),
never by the trial's own loss.

The study lives in ``output/search/search.db`` (SQLite), so an interrupted search
resumes where it stopped: a rerun tops the study up to ``trials`` finished trials.
The stage writes ``search.md`` / ``search.csv`` (every finished trial, ranked),
``history.png`` (objective per trial and the best so far) and ``importance.png``
(fANOVA parameter importances, Hutter, Hoos & Leyton-Brown, ICML 2014, through
:func:`optuna.importance.get_param_importances`).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from baler_ext.config import Config, toml_value
from baler_ext.errors import BalerError, ConfigError
from baler_ext.project import Project
from baler_ext.stages.group_plan import refuse_whole_file
from baler_ext.stages.scan import (
    Metric,
    check_metric,
    evaluate_run,
    rank_rows,
    run_config,
    table_names,
    write_tables,
)

log = logging.getLogger(__name__)

SEARCH_DIR = "search"
STORAGE = "search.db"
INSTALL_HINT = (
    "--mode search needs optuna: pip install 'baler_ext[search]' "
    "(optuna and scikit-learn, for the fANOVA importances)"
)
RANGE_KEYS = frozenset({"low", "high", "log", "step"})


@dataclass(frozen=True)
class Dimension:
    """One axis of the search space: a range (int or float) or a list of choices."""

    key: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    is_int: bool = False
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """The trial's value of this axis (choices are suggested by their TOML text)."""
        if self.choices:
            labels = [toml_value(c) for c in self.choices]
            return self.choices[labels.index(trial.suggest_categorical(self.key, labels))]
        if self.is_int:
            assert self.low is not None and self.high is not None  # checked when parsed
            return trial.suggest_int(
                self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def parse_space(space: dict[str, Any]) -> list[Dimension]:
    """Validate ``[search.space]`` into dimensions; errors name the key and the fix."""
    if not space:
        raise ConfigError(
            "no [search.space] in the config; add e.g. [search.space] "
            '"training.learning_rate" = {low = 1e-4, high = 1e-2, log = true}'
        )
    dims = []
    for key, spec in space.items():
        if len(key.split(".")) < 2:
            raise ConfigError(
                f"[search.space] key {key!r} must be section.key, e.g. model.latent_dim"
            )
        if isinstance(spec, list):
            if not spec:
                raise ConfigError(f"[search.space] '{key}': the list of choices is empty")
            dims.append(Dimension(key, choices=tuple(spec)))
            continue
        if not isinstance(spec, dict) or not {"low", "high"} <= set(spec) or set(spec) - RANGE_KEYS:
            raise ConfigError(
                f"[search.space] '{key}' = {spec!r}: give a list of choices or "
                "{low = x, high = y} with optional log = true, step = s"
            )
        low, high, log_, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
        if not (_number(low) and _number(high)) or not low < high:
            raise ConfigError(
                f"[search.space] '{key}': low and high must be numbers with "
                f"low < high, got {low!r}, {high!r}"
            )
        if not isinstance(log_, bool) or (log_ and low <= 0):
            raise ConfigError(
                f"[search.space] '{key}': log must be true or false, and a log range needs low > 0"
            )
        if step is not None and (not _number(step) or step <= 0 or log_):
            raise ConfigError(
                f"[search.space] '{key}': step must be a positive number and "
                "cannot be combined with log"
            )
        is_int = (
            isinstance(low, int)
            and isinstance(high, int)
            and (step is None or isinstance(step, int))
        )
        dims.append(
            Dimension(
                key,
                float(low),
                float(high),
                log_,
                float(step) if step is not None else None,
                is_int,
            )
        )
    return dims


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return optuna


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in row.items():
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        out[k] = v if isinstance(v, str | int | float | bool | type(None)) else str(v)
    return out


def search(project: Project, cfg: Config) -> list[dict[str, Any]]:
    """Run (or resume) the optuna study of ``[search]`` and write the ranked table and plots.

    Returns
    -------
    list of dict
        One row per finished trial, ranked best first.
    """
    if cfg.search is None:
        raise ConfigError(
            "no [search] section in the config; add [search] and [search.space] "
            "(see docs/search.md)"
        )
    refuse_whole_file(cfg, "search")
    optuna = _optuna()
    dims = parse_space(cfg.search.space)
    metric = check_metric(cfg.search.metric, cfg, "search.metric")
    out_dir = project.output / SEARCH_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(
        seed=cfg.search.seed, n_startup_trials=cfg.search.startup_trials
    )
    study = optuna.create_study(
        study_name=cfg.search.study,
        storage=f"sqlite:///{out_dir / STORAGE}",
        load_if_exists=True,
        sampler=sampler,
        direction="maximize" if metric.higher_is_better else "minimize",
    )
    done = [t for t in study.trials if t.state.is_finished()]
    todo = max(0, cfg.search.trials - len(done))
    log.info(
        "search %s: %d finished trials in %s, %d to run",
        cfg.search.study,
        len(done),
        out_dir / STORAGE,
        todo,
    )

    def objective(trial: Any) -> float:
        overrides = {d.key: d.suggest(trial) for d in dims}
        rid = f"trial_{trial.number:04d}"
        log.info("search trial %d: %s", trial.number, overrides)
        sub = Project(f"{project.name}/{SEARCH_DIR}/{rid}", out_dir / rid)
        try:
            row = evaluate_run(sub, run_config(cfg, overrides), metric)
        except BalerError as exc:  # a failed point is a result (FAIL), not a crashed search
            log.warning("search trial %d failed: %s", trial.number, exc)
            trial.set_user_attr("row", json.dumps({"status": f"failed: {exc}"}))
            return math.nan
        trial.set_user_attr("row", json.dumps(_jsonable(row)))
        value = row.get(metric.column)
        return float(value) if isinstance(value, int | float) else math.nan

    if todo:
        study.optimize(objective, n_trials=todo, catch=())
    rows = trial_rows(study, dims)
    rank_rows(rows, metric)
    columns = sorted({k for r in rows for k in r if k.startswith("rms_sigma_")})
    names = table_names([d.key for d in dims], columns, metric, cfg.analysis is not None)
    write_tables(rows, names, out_dir, "search", metric)
    write_search_plots(study, metric, out_dir)
    best = rows[0] if rows and rows[0].get("rank") == 1 else None
    if best is not None:
        log.info(
            "best trial %s: %s = %.4g (%s)",
            best["run"],
            metric.column,
            best[metric.column],
            {d.key: best[d.key] for d in dims},
        )
    return rows


def trial_rows(study: Any, dims: list[Dimension]) -> list[dict[str, Any]]:
    """One table row per finished trial: its parameters and what its run measured."""
    rows = []
    for t in study.trials:
        if not t.state.is_finished():
            continue
        row: dict[str, Any] = {"run": f"trial_{t.number:04d}"}
        for d in dims:
            v = t.params.get(d.key)
            if d.choices and v is not None:  # the TOML label back to the value, shown as scan
                v = d.choices[[toml_value(c) for c in d.choices].index(v)]
                v = v if isinstance(v, str) else toml_value(v)
            row[d.key] = int(v) if d.is_int and v is not None else v
        measured = json.loads(t.user_attrs.get("row", '{"status": "failed"}'))
        row.update({k: math.nan if v is None else v for k, v in measured.items()})
        rows.append(row)
    return rows


def write_search_plots(study: Any, metric: Metric, out_dir: Path) -> dict[str, Path]:
    """``history.png`` (objective per trial, best so far) and ``importance.png`` (fANOVA).

    The importance plot needs at least two finished trials that vary a parameter; it is
    left out (and logged) otherwise.
    """
    import numpy as np
    from optuna.importance import get_param_importances
    from optuna.trial import TrialState

    from baler_ext.plotting import hep_figure, save_png

    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    paths: dict[str, Path] = {}
    better = np.fmax if metric.higher_is_better else np.fmin
    with hep_figure(figsize=(8, 5)) as fig:
        ax = fig.subplots()
        x = np.array([t.number for t in done])
        y = np.array([t.value for t in done], dtype=float)
        ax.plot(x, y, "o", color="#1f77b4", label="trial")
        if len(y):
            ax.step(x, better.accumulate(y), where="post", color="#d62728", label="best so far")
        ax.set_xlabel("trial")
        ax.set_ylabel(metric.column)
        ax.set_title("optimisation history (TPE)")
        ax.legend(loc="best")
        paths["history"] = save_png(fig, out_dir, "history")
    try:
        importances = get_param_importances(study)
    except (RuntimeError, ValueError) as exc:
        log.warning("no parameter-importance plot: %s", exc)
        return paths
    if not importances:
        log.warning("no parameter-importance plot: no parameter varied across trials")
        return paths
    with hep_figure(figsize=(8, 1.0 + 0.5 * len(importances))) as fig:
        ax = fig.subplots()
        names = list(importances)[::-1]
        ax.barh(names, [importances[n] for n in names], color="#1f77b4")
        ax.set_xlabel(f"fANOVA importance for {metric.column}")
        ax.set_title(f"parameter importances ({len(done)} trials)")
        paths["importance"] = save_png(fig, out_dir, "importance")
    with (out_dir / "importance.json").open("w") as fh:
        json.dump(importances, fh, indent=1)
    return paths
