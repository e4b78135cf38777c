"""Where users wait: start-up of quick commands, and ``--mode all`` idle versus loaded.

1. **Start-up.** Wall time of ``--help``, ``--version``, ``--mode info`` (on the example
   project, compressed first) and a config error (an unknown key), each the median of
   ``--repeat`` fresh processes, next to two references measured in the same run: a bare
   ``python -c pass`` and ``python -c "import torch"`` (what every command paid before).
2. **``--mode all`` on the example project**, once on the machine as it is ("idle") and
   once with three competing busy processes (``python -c "while True: pass"``, started
   and killed by this script), for each ``execution.threads`` setting asked for
   (``default`` = the cores this process may use). Reported as the ratio loaded / idle,
   with the per-stage times from the CLI's ``stage X done`` lines.

Every command runs in a fresh process with the environment's thread variables
(``OMP_NUM_THREADS`` ...) removed, as a user's shell would have them. The machine's load
average and running-process count are recorded before each measurement, because other
jobs may share the cores.

    python benchmarks/bench_startup.py [--repeat 5] [--threads default,1]
                                       [--out benchmarks/RESULTS_startup.md]
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
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
              "NUMEXPR_MAX_THREADS", "NUMEXPR_NUM_THREADS", "OMP_WAIT_POLICY")
STAGE_LINE = re.compile(r"stage (\w+) done in ([0-9.]+) s")


def user_env() -> dict[str, str]:
    """This environment without thread settings, with the repository first on the path."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return env


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
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != expect:
        raise RuntimeError(f"{argv} exited {proc.returncode}, expected {expect}:\n"
                           f"{proc.stderr[-2000:]}")
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
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                      for _ in range(self.n)]
        time.sleep(1.0)  # let them reach the run queue
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="processes per start-up median")
    ap.add_argument("--threads", default="default",
                    help="comma-separated execution.threads settings for --mode all "
                         "(default = the cores this process may use)")
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

        # --- --mode all, idle and loaded ---------------------------------------------------
        runs = []
        for setting in args.threads.split(","):
            extra = [] if setting == "default" else ["--set", f"execution.threads={setting}"]
            row = {"threads": setting}
            for label, n in (("idle", 0), ("loaded", args.competitors)):
                shutil.rmtree(tmp / "example" / "output", ignore_errors=True)
                with Competitors(n):
                    row[f"{label}_load"] = load()
                    wall, err = timed([*cli, *proj, "-m", "all", *extra], env)
                row[label] = wall
                row[f"{label}_stages"] = {m[1]: float(m[2]) for m in STAGE_LINE.finditer(err)}
                print(f"all, threads {setting}, {label}: {wall:.1f} s ({row[f'{label}_load']})",
                      file=sys.stderr)
            runs.append(row)

        # --- start-up -----------------------------------------------------------------------
        before_startup = load()
        startup = {
            "python -c pass (reference)": median_wall([py, "-c", "pass"], env, args.repeat),
            "python -c 'import torch' (reference)": median_wall([py, "-c", "import torch"],
                                                                env, args.repeat),
            "baler_ext --help": median_wall([*cli, "--help"], env, args.repeat),
            "baler_ext --version": median_wall([*cli, "--version"], env, args.repeat),
            "baler_ext --mode info (example)": median_wall([*cli, *proj, "-m", "info"], env,
                                                           args.repeat),
            "baler_ext config error (unknown key)": median_wall(
                [*cli, *proj, "-m", "train", "--set", "training.epochz=3"], env, args.repeat,
                expect=2),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    import torch

    bare = startup["python -c pass (reference)"]
    torch_ref = startup["python -c 'import torch' (reference)"]
    lines = [
        "# Start-up and `--mode all` under load",
        "",
        f"`python benchmarks/bench_startup.py --repeat {args.repeat} --threads {args.threads}`"
        f" on {platform.machine()}, {os.cpu_count()} CPU cores (affinity: "
        f"{len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else 'n/a'}), "
        f"Python {platform.python_version()}, torch {torch.__version__}; thread variables "
        "removed from the environment. The machine is shared with other jobs: the load "
        "average and running-process count before each measurement are listed.",
        "",
        f"## Start-up (median of {args.repeat} fresh processes; {before_startup})",
        "",
        "| command | wall s | × bare python | × import torch |",
        "|---|---|---|---|",
    ]
    for name, wall in startup.items():
        lines.append(f"| {name} | {wall:.2f} | {wall / bare:.1f} | {wall / torch_ref:.2f} |")
    lines += [
        "",
        f"## `--mode all` on the example project, idle and with {args.competitors} busy "
        "competing processes",
        "",
        "| execution.threads | idle s | loaded s | loaded / idle | idle: before | "
        "loaded: before |",
        "|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(f"| {r['threads']} | {r['idle']:.1f} | {r['loaded']:.1f} | "
                     f"{r['loaded'] / r['idle']:.2f} | {r['idle_load']} | {r['loaded_load']} |")
    lines += ["", "Per stage (s, from the CLI's `stage X done` lines):", "",
              "| execution.threads | run | " + " | ".join(runs[0]["idle_stages"]) + " |",
              "|---|---|" + "---|" * len(runs[0]["idle_stages"])]
    for r in runs:
        for label in ("idle", "loaded"):
            stages = r[f"{label}_stages"]
            lines.append(f"| {r['threads']} | {label} | "
                         + " | ".join(f"{stages.get(s, float('nan')):.1f}"
                                      for s in runs[0]["idle_stages"]) + " |")
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
