"""Where users wait: start-up of quick commands, and ``--mode all`` idle versus loaded.

1. **Start-up.** Wall time of ``--help``, ``--version``, ``--mode info`` (on the example
   project, compressed first) and a config error (an unknown key), each the median of
   ``--repeat`` fresh processes, next to two references measured in the same run: a bare
   ``python -c pass`` and ``python -c "import torch"`` (what every command paid before).
2. **Training** (``--mode train``, ``--epochs`` epochs of the example's model, no early
   stop), once on the machine as it is ("idle") and once with three competing busy
   processes (``python -c "while True: pass"``, started and killed by this script), for
   each ``execution.threads`` setting asked for (``default`` = the cores this process may
   use) and, with ``--before REV``, for the code of git revision ``REV`` (exported with
   ``git archive``: torch's own thread defaults before ``execution.threads`` existed).
3. **``--mode all`` on the example project**, idle and loaded, for each ``--all-threads``
   setting;
   reported as the ratio loaded / idle, with the per-stage times from the CLI's
   ``stage X done`` lines.

With ``--before REV`` the start-up commands are timed on that revision too.

Every command runs in a fresh process with the environment's thread variables
(``OMP_NUM_THREADS`` ...) removed, as a user's shell would have them. The machine's load
average and running-process count are recorded before each measurement, because other
jobs may share the cores.

    python benchmarks/bench_startup.py [--repeat 5] [--threads default,1] [--epochs 10]
        [--all-threads default] [--before REV] [--out benchmarks/RESULTS_startup.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "projects" / "example"
THREAD_ENV = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_MAX_THREADS",
    "NUMEXPR_NUM_THREADS",
    "OMP_WAIT_POLICY",
)
STAGE_LINE = re.compile(r"stage (\w+) done in ([0-9.]+) s")


def user_env(src: Path = REPO) -> dict[str, str]:
    """This environment without thread settings, with ``src`` first on the path."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(src), *filter(None, [env.get("PYTHONPATH")])])
    return env


def export_revision(rev: str, dest: Path) -> Path:
    """The package as it was at git revision ``rev``, extracted into ``dest``."""
    dest.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", rev, "baler_ext"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def load() -> str:
    """``/proc/loadavg``: 1-min load average and running/total scheduling entities."""
    try:
        fields = Path("/proc/loadavg").read_text().split()
        return f"load {fields[0]}, running {fields[3]}"
    except OSError:
        return "load n/a"


def timed(argv: list[str], env: dict[str, str], expect: int = 0) -> tuple[float, str]:
    """Wall seconds of one fresh process and its stderr; checks its exit code."""
    t0 = time.perf_counter()
    # not from the repository: ``python -m`` puts the working folder first on the path,
    # which would shadow the code that PYTHONPATH names (e.g. --before)
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
    wall = time.perf_counter() - t0
    if proc.returncode != expect:
        raise RuntimeError(
            f"{argv} exited {proc.returncode}, expected {expect}:\n{proc.stderr[-2000:]}"
        )
    return wall, proc.stderr


def median_wall(argv: list[str], env: dict[str, str], repeat: int, expect: int = 0) -> float:
    timed(argv, env, expect)  # warm the file cache
    return statistics.median(timed(argv, env, expect)[0] for _ in range(repeat))


class Competitors:
    """``n`` busy Python processes for the duration of a ``with`` block."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> Competitors:
        self.procs = [
            subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(self.n)
        ]
        time.sleep(1.0)  # let them reach the run queue
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()


def idle_and_loaded(
    argv: list[str], env: dict[str, str], competitors: int, reset: Path | None, label: str
) -> dict:
    """Wall time, stage times and machine load of ``argv`` idle and with competitors."""
    row: dict = {"label": label}
    for state, n in (("idle", 0), ("loaded", competitors)):
        if reset is not None:
            shutil.rmtree(reset, ignore_errors=True)
        with Competitors(n):
            row[f"{state}_load"] = load()
            wall, err = timed(argv, env)
        row[state] = wall
        row[f"{state}_stages"] = {m[1]: float(m[2]) for m in STAGE_LINE.finditer(err)}
        print(f"{label}, {state}: {wall:.1f} s ({row[f'{state}_load']})", file=sys.stderr)
    return row


def ratio_table(rows: list[dict], what: str) -> list[str]:
    lines = [
        f"| {what} | idle s | loaded s | loaded / idle | idle: before | loaded: before |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['label']} | {r['idle']:.1f} | {r['loaded']:.1f} | "
        f"{r['loaded'] / r['idle']:.2f} | {r['idle_load']} | {r['loaded_load']} |"
        for r in rows
    ]
    return lines


def startup_times(
    cli: list[str], proj: list[str], env: dict[str, str], repeat: int
) -> dict[str, float]:
    return {
        "--help": median_wall([*cli, "--help"], env, repeat),
        "--version": median_wall([*cli, "--version"], env, repeat),
        "--mode info (example)": median_wall([*cli, *proj, "-m", "info"], env, repeat),
        "config error (unknown key)": median_wall(
            [*cli, *proj, "-m", "train", "--set", "training.epochz=3"], env, repeat, expect=2
        ),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="processes per start-up median")
    ap.add_argument(
        "--threads",
        default="default",
        help="comma-separated execution.threads settings to run "
        "(default = the cores this process may use)",
    )
    ap.add_argument(
        "--all-threads",
        default="default",
        help="comma-separated execution.threads settings of the --mode all runs",
    )
    ap.add_argument("--epochs", type=int, default=10, help="epochs of the training runs")
    ap.add_argument(
        "--before",
        default=None,
        metavar="REV",
        help="also time the code of this git revision (e.g. the parent commit)",
    )
    ap.add_argument("--competitors", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "RESULTS_startup.md")
    args = ap.parse_args(argv)

    env = user_env()
    py = sys.executable
    cli = [py, "-m", "baler_ext"]
    tmp = Path(tempfile.mkdtemp(prefix="bench_startup_"))
    try:
        shutil.copytree(EXAMPLE, tmp / "example", ignore=shutil.ignore_patterns("output"))
        proj = ["--projects-dir", str(tmp), "-p", "example"]

        def settings(arg: str) -> list[tuple[str, list[str]]]:
            return [
                (s, [] if s == "default" else ["--set", f"execution.threads={s}"])
                for s in arg.split(",")
            ]

        before_env = user_env(export_revision(args.before, tmp / "before")) if args.before else None

        # --- training, idle and loaded ------------------------------------------------------
        train = [
            *cli,
            *proj,
            "-m",
            "train",
            "--set",
            f"training.epochs={args.epochs}",
            "--set",
            "training.early_stopping_patience=0",
        ]
        train_rows = []
        if before_env is not None:
            train_rows.append(
                idle_and_loaded(
                    train, before_env, args.competitors, None, f"{args.before} (torch defaults)"
                )
            )
        for setting, extra in settings(args.threads):
            train_rows.append(
                idle_and_loaded([*train, *extra], env, args.competitors, None, f"threads {setting}")
            )

        # --- --mode all, idle and loaded ----------------------------------------------------
        all_rows = [
            idle_and_loaded(
                [*cli, *proj, "-m", "all", *extra],
                env,
                args.competitors,
                tmp / "example" / "output",
                f"threads {setting}",
            )
            for setting, extra in settings(args.all_threads)
        ]

        # --- start-up (on the containers the last run wrote) --------------------------------
        before_startup = load()
        refs = {
            "python -c pass": median_wall([py, "-c", "pass"], env, args.repeat),
            "python -c 'import torch'": median_wall([py, "-c", "import torch"], env, args.repeat),
        }
        startup = {"this code": startup_times(cli, proj, env, args.repeat)}
        if before_env is not None:
            startup[args.before] = startup_times(cli, proj, before_env, args.repeat)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    import torch

    bare, torch_ref = refs["python -c pass"], refs["python -c 'import torch'"]
    versions = list(startup)
    lines = [
        "# Start-up, and training and `--mode all` under load",
        "",
        f"`python benchmarks/bench_startup.py --repeat {args.repeat} --threads {args.threads} "
        f"--all-threads {args.all_threads} --epochs {args.epochs}"
        f"{f' --before {args.before}' if args.before else ''}` on "
        f"{platform.machine()}, {os.cpu_count()} CPU cores (affinity: "
        f"{len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else 'n/a'}), "
        f"Python {platform.python_version()}, torch {torch.__version__}; thread variables "
        "removed from the environment. *loaded* = with "
        f'{args.competitors} busy competing processes (`python -c "while True: pass"`). '
        "The machine is shared with other jobs: the load average and running-process count "
        "before each measurement are listed.",
        "",
        f"## Start-up (median of {args.repeat} fresh processes; {before_startup})",
        "",
        f"References in the same run: `python -c pass` {bare:.2f} s, "
        f"`python -c 'import torch'` {torch_ref:.2f} s.",
        "",
        "| command | "
        + " | ".join(f"{v}: wall s" for v in versions)
        + " | × bare python | × import torch |",
        "|---|" + "---|" * (len(versions) + 2),
    ]
    for name, wall in startup["this code"].items():
        lines.append(
            f"| `baler_ext {name}` | "
            + " | ".join(f"{startup[v][name]:.2f}" for v in versions)
            + f" | {wall / bare:.1f} | {wall / torch_ref:.2f} |"
        )
    lines += ["", f"## Training: {args.epochs} epochs of the example's model", ""]
    lines += ratio_table(train_rows, "code / execution.threads")
    lines += ["", "## `--mode all` on the example project", ""]
    lines += ratio_table(all_rows, "execution.threads")
    stages = list(all_rows[0]["idle_stages"])
    lines += [
        "",
        "Per stage (s, from the CLI's `stage X done` lines):",
        "",
        "| execution.threads | run | " + " | ".join(stages) + " |",
        "|---|---|" + "---|" * len(stages),
    ]
    for r in all_rows:
        for state in ("idle", "loaded"):
            lines.append(
                f"| {r['label']} | {state} | "
                + " | ".join(f"{r[f'{state}_stages'].get(s, float('nan')):.1f}" for s in stages)
                + " |"
            )
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
