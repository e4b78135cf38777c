"""Command-line entry point: parse arguments, load the config, run one stage.

Heavy libraries (torch, uproot, matplotlib, iminuit) are imported only by the stage
that runs, after the config is loaded and the thread count set, so ``--help``,
``--version`` and config errors return at once and ``--mode info`` never loads them.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from baler_ext import __version__
from baler_ext.console import setup_logging, terminal
from baler_ext.errors import FILESYSTEM_EXIT, BalerError, ConfigError, describe_os_error
from baler_ext.stages import STAGES

log = logging.getLogger("baler_ext")


def build_parser() -> argparse.ArgumentParser:
    modes = "\n".join(f"  {name:<12} {spec.help}" for name, spec in STAGES.items())
    parser = argparse.ArgumentParser(
        prog="baler_ext",
        description="Compress HEP tables (ROOT/Parquet) with autoencoders and measure the "
        "physics impact.",
        epilog=f"modes:\n{modes}\n\nexample: baler_ext --project example --mode all",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--project", "-p", help="project name (a folder under --projects-dir)")
    parser.add_argument(
        "--mode",
        "-m",
        choices=list(STAGES),
        metavar="MODE",
        help="stage to run (see the list below)",
    )
    parser.add_argument(
        "--workflow",
        type=Path,
        default=None,
        metavar="FILE",
        help="run a multi-configuration study (e.g. workflows/compare_models.toml)",
    )
    parser.add_argument(
        "--projects-dir",
        type=Path,
        default=Path("projects"),
        help="folder holding the projects (default: ./projects)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="use this config file instead of projects/NAME/config.toml",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config key for this run (TOML value); repeatable",
    )
    parser.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default=None,
        help="override training.device (auto: CUDA when present)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="train: continue an interrupted run from output/model/checkpoint.pt;"
        " compress/decompress: skip files already done (and verified)",
    )
    parser.add_argument(
        "--executor",
        choices=["local", "dask"],
        default=None,
        help="compress/decompress: run here file by file (local, default) or one "
        "dask task per file (overrides execution.executor)",
    )
    parser.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="dask scheduler address (tcp://host:8786); implies --executor dask",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="workers of the dask LocalCluster when no --scheduler is given",
    )
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    verbosity.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    parser.add_argument("--version", action="version", version=f"baler_ext {__version__}")
    return parser


def config_overrides(args: argparse.Namespace) -> list[str]:
    """``--set`` items plus those implied by ``--device`` and the executor options.

    Used for a single project and for every run of a ``--workflow``.
    """
    overrides = list(args.overrides)
    if args.device is not None:
        overrides.append(f'training.device="{args.device}"')
    executor = args.executor or ("dask" if args.scheduler or args.workers else None)
    if executor is not None:
        overrides.append(f'execution.executor="{executor}"')
    if args.scheduler is not None:
        overrides.append(f'execution.scheduler="{args.scheduler}"')
    if args.workers is not None:
        overrides.append(f"execution.workers={args.workers}")
    return overrides


def run(args: argparse.Namespace) -> object:
    """Run the stage named by ``args.mode``; raises BalerError on user errors."""
    from baler_ext import heap, threads
    from baler_ext.config import load_config
    from baler_ext.project import Project

    project = Project.locate(args.project, args.projects_dir)
    spec = STAGES[args.mode]
    if not spec.needs_config:
        return spec.load()(project)
    if args.config is None:
        project.require_exists()
    cfg = load_config(
        args.config or project.config_path,
        config_overrides(args),
        defer_analysis=not spec.validates_analysis,
    )
    if getattr(args, "resume", False) and args.mode not in ("train", "compress", "decompress"):
        raise ConfigError("--resume applies to --mode train, compress and decompress only")
    # before the stage module imports torch: OpenMP reads its settings when it loads
    threads.configure(threads.resolve_threads(cfg.execution.threads))
    heap.keep_freed_memory()
    stage = spec.load()
    threads.apply_if_loaded()
    if getattr(args, "resume", False):
        return stage(project, cfg, resume=True)
    return stage(project, cfg)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (0 on success)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.workflow is None and (args.project is None or args.mode is None):
        parser.error("--project and --mode (or --workflow FILE) are required (see --help)")
    setup_logging(args.verbose, args.quiet)
    t0 = time.perf_counter()
    try:
        with terminal():
            if args.workflow is not None:
                from baler_ext import heap, threads
                from baler_ext.workflow import run_workflow

                threads.configure(threads.resolve_threads(None))
                heap.keep_freed_memory()
                run_workflow(args.workflow, config_overrides(args))
            else:
                run(args)
                log.info("%s done in %.1f s", args.mode, time.perf_counter() - t0)
    except BalerError as exc:
        log.error("%s", exc)
        return exc.exit_code
    # --- filesystem errors and Ctrl-C: one line, no traceback (outputs are written to a
    # temporary name and renamed when complete, so nothing half-written is left)
    except OSError as exc:
        log.error("%s", describe_os_error(exc))
        return FILESYSTEM_EXIT
    except KeyboardInterrupt:
        resumable = args.workflow is None and args.mode in ("train", "compress", "decompress")
        log.error(
            "interrupted%s",
            f"; rerun with --resume to continue where --mode {args.mode} stopped"
            if resumable
            else "",
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
