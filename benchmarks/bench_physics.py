"""Speed of the physics checks on the example project (issue 12).

Measures, in one process and on the same data:

* the paired bootstrap of ``--mode analyse`` (``analysis.bootstrap_replicas`` replicas,
  mass and width refitted on both samples, plus the tagger ROC), against the reference
  of one nominal fit pair (two ``fit_peak`` calls);
* ``--mode evaluate`` with ``evaluation.plots = "summary"`` (the default), against the
  reference ``plots = "all"`` (every plot of every column: the behaviour before).

Run from the repository root after ``baler_ext --project example --mode all``::

    PYTHONPATH=. OMP_NUM_THREADS=1 python -m benchmarks.bench_physics [--repeat 3]

Writes ``benchmarks/RESULTS_physics.md`` and ``benchmarks/results_physics.json``; times
are the minimum over ``--repeat`` runs, the machine load is recorded with them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


CPU: dict[str, float] = {}


def best_of(repeat: int, func: Callable[[], Any], name: str = "") -> float:
    """Minimum wall time of ``repeat`` calls of ``func`` (seconds).

    The minimum CPU time of this process over the calls is kept in :data:`CPU` under
    ``name``: on a shared machine it is the steadier number.
    """
    times, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        func()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    if name:
        CPU[name] = min(cpu)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--projects-dir", type=Path, default=ROOT / "projects")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import dataclasses

    from baler_ext.analysis import fit_peak
    from baler_ext.analysis.mass import analysis_values_and_keys
    from baler_ext.config import load_config
    from baler_ext.project import Project
    from baler_ext.stages.analyse import _read_samples, analyse, sample_pairs
    from baler_ext.stages.evaluate import evaluate

    project = Project.locate("example", args.projects_dir)
    cfg = load_config(project.config_path)
    spec = cfg.analysis
    assert spec is not None
    samples = _read_samples(sample_pairs(project, cfg), cfg, spec)
    v_b, _ = analysis_values_and_keys(samples.original, spec, samples.keys)
    v_a, _ = analysis_values_and_keys(samples.decompressed, spec, samples.keys)

    fit_pair = best_of(args.repeat, lambda: (fit_peak(v_b, spec), fit_peak(v_a, spec)), "fit_pair")
    no_boot = dataclasses.replace(cfg, analysis=dataclasses.replace(spec, bootstrap_replicas=0))
    analyse_plain = best_of(
        args.repeat, lambda: analyse(project, no_boot, progress=False), "analyse_no_bootstrap"
    )
    analyse_boot = best_of(
        args.repeat, lambda: analyse(project, cfg, progress=False), "analyse_with_bootstrap"
    )

    def run_evaluate(mode: str) -> None:
        evaluate(
            project,
            dataclasses.replace(cfg, evaluation=dataclasses.replace(cfg.evaluation, plots=mode)),
        )

    eval_all = best_of(args.repeat, lambda: run_evaluate("all"), "evaluate_all")
    eval_summary = best_of(args.repeat, lambda: run_evaluate("summary"), "evaluate_summary")
    run_evaluate(cfg.evaluation.plots)  # leave the configured output on disk

    result = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_avg_1min_at_end": os.getloadavg()[0],
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        },
        "data": {
            "rows": len(samples.original),
            "mass_values": int(v_b.size),
            "resampling_unit": samples.unit,
        },
        "repeat": args.repeat,
        "replicas": spec.bootstrap_replicas,
        "seconds": {
            "fit_pair": fit_pair,
            "analyse_no_bootstrap": analyse_plain,
            "analyse_with_bootstrap": analyse_boot,
            "bootstrap_only": analyse_boot - analyse_plain,
            "evaluate_all": eval_all,
            "evaluate_summary": eval_summary,
        },
        "cpu_seconds": dict(CPU),
        "ratios": {
            "bootstrap_over_fit_pair": (analyse_boot - analyse_plain) / fit_pair,
            "evaluate_summary_over_all": eval_summary / eval_all,
        },
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "results_physics.json").write_text(json.dumps(result, indent=2) + "\n")
    s, r, c = result["seconds"], result["ratios"], result["cpu_seconds"]
    text = f"""# Physics checks: speed on the example project

Generated by `python -m benchmarks.bench_physics` (minimum of {args.repeat} runs each);
{result["data"]["rows"]} jets ({result["data"]["mass_values"]} mass values), resampled by
{samples.unit}. Machine: {result["machine"]["cpus"]} CPUs, 1-minute load average
{result["machine"]["load_avg_1min_at_end"]:.1f} at the end, OMP_NUM_THREADS =
{result["machine"]["omp_num_threads"]}.

| what | wall s | CPU s | wall ratio to its reference (same run) |
|---|---|---|---|
| one nominal fit pair (reference) | {s["fit_pair"]:.3f} | {c["fit_pair"]:.3f} | 1 |
| paired bootstrap, {spec.bootstrap_replicas} replicas (mass, width, tagger) | \
{s["bootstrap_only"]:.2f} | \
{c["analyse_with_bootstrap"] - c["analyse_no_bootstrap"]:.2f} | \
{r["bootstrap_over_fit_pair"]:.0f}× a fit pair |
| `--mode analyse` without / with the bootstrap | {s["analyse_no_bootstrap"]:.2f} / \
{s["analyse_with_bootstrap"]:.2f} | {c["analyse_no_bootstrap"]:.2f} / \
{c["analyse_with_bootstrap"]:.2f} | |
| `--mode evaluate`, `plots = "all"` (reference) | {s["evaluate_all"]:.2f} | \
{c["evaluate_all"]:.2f} | 1 |
| `--mode evaluate`, `plots = "summary"` (default) | {s["evaluate_summary"]:.2f} | \
{c["evaluate_summary"]:.2f} | {r["evaluate_summary_over_all"]:.2f} |

Wall times on a loaded machine exceed the CPU times by the share of the cores the
process got; the CPU times are what the stage costs.
"""
    (args.out_dir / "RESULTS_physics.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
