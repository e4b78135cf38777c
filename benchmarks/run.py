"""baler_ext against what a physicist would use instead, side by side on the same rows (issue 7).

Run from the repository root (with ``pip install -e '.[bench]'``)::

    python -m benchmarks.run --full     # both datasets, bound sweep, Baler; ~20 min on 2 cores
    python -m benchmarks.run --quick    # a few thousand rows, 2 epochs, P1/P2 only

Writes ``benchmarks/RESULTS.md``, ``benchmarks/results.json`` and ``benchmarks/rd_<class>.png``
(``--out-dir`` elsewhere). Every dataset is split in two halves: the autoencoders are
trained on the first, every method compresses the second. Each method runs in its own
process (``benchmarks/worker.py``) with one CPU thread, so its peak RSS is its own.
See ``docs/benchmarks.md`` for what each number counts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import ae_methods  # noqa: F401  (registers the autoencoder methods)
from benchmarks.common import (
    CLASSES,
    CMS_COLUMNS,
    DATA,
    ROOT,
    SHARED,
    Table,
    bound_limits,
    cms_operating_point,
    column_class,
    operating_point,
    read_table,
    write_table,
)
from benchmarks.methods import METHODS, available

log = logging.getLogger("benchmarks.run")

LOSSLESS = [
    "zstd19_f64",
    "zstd19_f32",
    "blosc2_shuffle_f64",
    "blosc2_bitshuffle_f64",
    "blosc2_shuffle_f32",
    "blosc2_bitshuffle_f32",
    "root_zlib",
    "root_lzma",
    "root_zstd",
]
LOSSY = ["bitround_zstd", "bitround_blosc2", "quantise_zstd", "sz3", "zfp"]

DATASETS = {
    "pythia_ttbar": {
        "latents": [4, 8],
        "bounded_latent": 8,
        "fit": True,
        "bounds": operating_point,
    },
    "cms_tutorial": {
        "latents": [2, 3],
        "bounded_latent": 3,
        "fit": False,
        "bounds": cms_operating_point,
    },
}


# ----------------------------------------------------------------------------- data
def load_dataset(name: str, rows: int | None) -> Table:
    """The float columns of a dataset; ``rows`` caps the total (both halves)."""
    if name == "pythia_ttbar":
        t = read_table(DATA)
        if rows:
            t = Table(t.names, t.values[:rows], t.dtypes)
        return t
    import uproot

    parts = []
    for f in sorted((SHARED / "cms_hep_tutorial").glob("*.root")):
        with uproot.open(f) as fh:
            arr = fh["events"].arrays(CMS_COLUMNS, library="ak")
        import awkward as ak

        parts.append(
            np.stack(
                [ak.to_numpy(ak.flatten(arr[c])).astype(np.float64) for c in CMS_COLUMNS], axis=1
            )
        )
    values = np.concatenate(parts)
    # the files are one process each (qcd, single top, WW, WZ, ZZ): a seeded shuffle makes
    # the two halves the same mixture
    values = values[np.random.default_rng(7).permutation(len(values))]
    if rows:
        values = values[:rows]
    return Table(list(CMS_COLUMNS), values, ["float32"] * len(CMS_COLUMNS))


# ----------------------------------------------------------------------------- jobs
def run_job(job: dict, path: Path, threads: int = 1) -> dict:
    path.write_text(json.dumps(job))
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "TQDM_DISABLE": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.worker", str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return {"error": lines[-1] if lines else f"exit code {proc.returncode}"}
    return json.loads(path.with_suffix(".out.json").read_text())


# ----------------------------------------------------------------------------- metrics
def error_stats(table: Table, restored: np.ndarray, bounds: dict | None) -> dict:
    """Per-class max/RMS absolute error, max error/bound, normalised RMS."""
    y = table.as_stored(restored)
    err = np.abs(y - table.values)
    out: dict = {"classes": {}}
    for cls in CLASSES:
        idx = [j for j, c in enumerate(table.names) if column_class(c) == cls]
        if not idx:
            continue
        e = err[:, idx]
        out["classes"][cls] = {"max": float(e.max()), "rms": float(np.sqrt(np.mean(e**2)))}
    std = table.values.std(axis=0)
    std[std == 0] = 1.0
    out["nrms"] = float(np.sqrt(np.mean((np.sqrt(np.mean(err**2, axis=0)) / std) ** 2)))
    if bounds is not None:
        lim = bound_limits(table, bounds)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(lim > 0, err / np.where(lim > 0, lim, 1.0), np.where(err > 0, np.inf, 0))
        out["max_err_over_bound"] = float(r.max())
        out["bounds_met"] = bool(np.all(err <= lim))
        for cls in out["classes"]:
            idx = [j for j, c in enumerate(table.names) if column_class(c) == cls]
            out["classes"][cls]["max_over_bound"] = float(r[:, idx].max())
    return out


def fit_mass(values: np.ndarray):
    from baler_ext.analysis import AnalysisSpec, fit_peak

    spec = AnalysisSpec.from_dict(
        {
            "variable": "column",
            "column": "mass",
            "fit_range": [120.0, 230.0],
            "peak": "gauss",
            "background": "poly1",
        }
    )
    return fit_peak(values, spec)


def fit_stats(table: Table, restored: np.ndarray, before) -> dict:
    from baler_ext.analysis import compare_fits

    try:
        after = fit_mass(table.as_stored(restored)[:, table.names.index("mass")])
    except Exception as exc:  # a failed fit is a result
        return {"failed": str(exc)}
    cmp_ = compare_fits(before, after)
    return {
        "mass": after.mass,
        "mass_err": after.mass_err,
        "width": after.width,
        "width_err": after.width_err,
        "delta_mass": cmp_.delta_mass,
        "shift_sigma_stat": abs(cmp_.delta_mass) / before.mass_err,
        "shift_sigma_quad": cmp_.mass_shift_sigma,
        "delta_width": cmp_.delta_width,
        "width_shift_sigma_stat": abs(cmp_.delta_width) / before.width_err,
    }


# ----------------------------------------------------------------------------- one dataset
def bench_dataset(name: str, args: argparse.Namespace, work: Path) -> dict:
    spec = DATASETS[name]
    table = load_dataset(name, args.rows)
    n = table.rows
    train_t = Table(table.names, table.values[: n // 2], table.dtypes)
    test_t = Table(table.names, table.values[n // 2 :], table.dtypes)
    d = work / name
    (d / "jobs").mkdir(parents=True, exist_ok=True)
    train_path, test_path = d / "train_half.parquet", d / "test_half.parquet"
    write_table(train_t, train_t.values, train_path)
    write_table(test_t, test_t.values, test_path)
    test_t = read_table(test_path)
    log.info(
        "%s: %d rows, %d columns; training on %d, compressing %d",
        name,
        n,
        len(table.names),
        train_t.rows,
        test_t.rows,
    )
    latents = spec["latents"] if not args.quick else [spec["bounded_latent"]]
    res: dict = {
        "rows_total": n,
        "rows_compressed": test_t.rows,
        "columns": table.names,
        "dtypes": sorted(set(table.dtypes)),
        "raw_float64": test_t.raw_float64,
        "raw_float32": test_t.raw_float32,
        "training": {},
        "runs": [],
    }
    selected = set(args.methods.split(",")) if args.methods else None

    def wanted(method: str) -> bool:
        return selected is None or method in selected

    # training (--train-threads, default 2: the machine's cores)
    models: dict[int, str] = {}
    for lat in sorted(set(latents) | {spec["bounded_latent"]}):
        if not (wanted("balerext_latent") or wanted("balerext_bounded")):
            break
        r = run_job(
            {
                "kind": "train_balerext",
                "workdir": str(d),
                "project": f"train_l{lat}",
                "data": str(train_path),
                "latent_dim": lat,
                "epochs": args.epochs,
            },
            d / "jobs" / f"train_balerext_l{lat}.json",
            threads=args.train_threads,
        )
        res["training"][f"baler_ext latent {lat}"] = r
        log.info("%s: trained baler_ext latent %d: %s", name, lat, r)
        if "error" not in r:
            models[lat] = r["model_dir"]
    baler_models: dict[int, str] = {}
    baler_note = None
    baler_lats = (
        []
        if args.no_baler or not wanted("baler_0.0.6")
        else [lat for lat in latents if args.baler_latents is None or lat in args.baler_latents]
    )
    for lat in baler_lats:
        try:
            import baler_compressor  # noqa: F401
        except ImportError:
            baler_note = "Baler 0.0.6 not installed: pip install --no-deps baler-compressor==0.0.6"
            break
        r = run_job(
            {
                "kind": "train_baler",
                "workdir": str(d),
                "project": f"baler_l{lat}",
                "data": str(train_path),
                "latent_dim": lat,
                "epochs": args.epochs,
            },
            d / "jobs" / f"train_baler_l{lat}.json",
            threads=args.train_threads,
        )
        res["training"][f"Baler 0.0.6 latent {lat}"] = r
        log.info("%s: trained Baler latent %d: %s", name, lat, r)
        if "error" in r:
            baler_note = f"Baler 0.0.6 training failed: {r['error']}"
        else:
            baler_models[lat] = r["model_path"]
            res["baler_patches"] = r.get("patches")
    res["baler_note"] = baler_note
    # baler_ext trained like Baler (min-max, same schedule) for the like-for-like rows
    like_models: dict[int, str] = {}
    for lat in baler_models if wanted("balerext_latent") else []:
        r = run_job(
            {
                "kind": "train_balerext",
                "workdir": str(d),
                "like_baler": True,
                "project": f"train_l{lat}_like_baler",
                "data": str(train_path),
                "latent_dim": lat,
                "epochs": args.epochs,
            },
            d / "jobs" / f"train_balerext_l{lat}_like_baler.json",
            threads=args.train_threads,
        )
        res["training"][f"baler_ext latent {lat} like Baler"] = r
        log.info("%s: trained baler_ext latent %d like Baler: %s", name, lat, r)
        if "error" not in r:
            like_models[lat] = r["model_dir"]

    # the job list
    jobs: list[dict] = []
    for m in LOSSLESS:
        jobs.append({"method": m, "setting": "lossless", "bounds": None})
    for scale in args.scales:
        label = {1.0: "P1", 0.1: "P2"}.get(scale, f"P1x{scale:g}")
        b = spec["bounds"](scale)
        for m in LOSSY:
            jobs.append({"method": m, "setting": label, "scale": scale, "bounds": b})
        if spec["bounded_latent"] in models:
            lat = spec["bounded_latent"]
            jobs.append(
                {
                    "method": "balerext_bounded",
                    "setting": label,
                    "scale": scale,
                    "bounds": b,
                    "params": {
                        "workdir": str(d),
                        "project": f"bounded_{label}",
                        "model_dir": models[lat],
                        "test_path": str(test_path),
                        "latent_dim": lat,
                        "epochs": args.epochs,
                        "compression": {"mode": "bounded"},
                    },
                }
            )
    for lat in latents:
        if lat not in models:
            continue
        for ldt in ("float32", "float16"):
            jobs.append(
                {
                    "method": "balerext_latent",
                    "setting": f"latent {lat} {ldt}",
                    "latent": lat,
                    "bounds": None,
                    "params": {
                        "workdir": str(d),
                        "project": f"latent_{lat}_{ldt}",
                        "model_dir": models[lat],
                        "test_path": str(test_path),
                        "latent_dim": lat,
                        "epochs": args.epochs,
                        "compression": {"mode": "latent", "latent_dtype": ldt},
                    },
                }
            )
    for lat, model_dir in like_models.items():
        jobs.append(
            {
                "method": "balerext_latent",
                "setting": f"latent {lat} float64 like Baler",
                "latent": lat,
                "bounds": None,
                "params": {
                    "workdir": str(d),
                    "project": f"latent_{lat}_like_baler",
                    "model_dir": model_dir,
                    "test_path": str(test_path),
                    "latent_dim": lat,
                    "epochs": args.epochs,
                    "like_baler": True,
                    "compression": {"mode": "latent", "latent_dtype": "float64"},
                },
            }
        )
    for lat, path in baler_models.items():
        jobs.append(
            {
                "method": "baler_0.0.6",
                "setting": f"latent {lat} float64",
                "latent": lat,
                "bounds": None,
                "params": {
                    "workdir": str(d),
                    "project": f"baler_l{lat}",
                    "model_path": path,
                    "latent_dim": lat,
                    "epochs": args.epochs,
                },
            }
        )

    before = None
    if spec["fit"]:
        before = fit_mass(test_t.column("mass"))
        res["fit_original"] = {
            "mass": before.mass,
            "mass_err": before.mass_err,
            "width": before.width,
            "width_err": before.width_err,
        }
    for i, job in enumerate(jobs):
        m = job["method"]
        if not wanted(m):
            continue
        ok, why = available(m)
        run = {k: v for k, v in job.items() if k != "params"}
        run["family"] = METHODS[m].family
        if not ok:
            run["skipped"] = why
            res["runs"].append(run)
            continue
        jpath = d / "jobs" / f"{i:03d}_{m}.json"
        out = run_job(
            {
                "kind": "method",
                "method": m,
                "test_path": str(test_path),
                "bounds": job["bounds"],
                "params": job.get("params", {}),
                "out_npy": str(jpath.with_suffix(".npy")),
            },
            jpath,
        )
        run.update(out)
        if "error" not in out:
            restored = np.load(jpath.with_suffix(".npy"))
            run["ratio_f64"] = test_t.raw_float64 / out["bytes"]
            run["ratio_f32"] = test_t.raw_float32 / out["bytes"]
            run["compress_MBps"] = test_t.raw_float64 / 1e6 / out["compress_s"]
            run["decompress_MBps"] = test_t.raw_float64 / 1e6 / out["decompress_s"]
            run["errors"] = error_stats(test_t, restored, job["bounds"])
            if before is not None:
                run["fit"] = fit_stats(test_t, restored, before)
            jpath.with_suffix(".npy").unlink()
        log.info(
            "%s %s %s: %s",
            name,
            m,
            job["setting"],
            {k: run.get(k) for k in ("ratio_f64", "compress_MBps", "decompress_MBps", "error")},
        )
        res["runs"].append(run)
    return res


# ----------------------------------------------------------------------------- targets
def _best_reference(runs: list[dict], setting: str) -> dict | None:
    refs = [
        r
        for r in runs
        if r.get("family") == "lossy"
        and r.get("setting") == setting
        and "ratio_f64" in r
        and r["errors"].get("bounds_met")
    ]
    return max(refs, key=lambda r: r["ratio_f64"]) if refs else None


def _find(runs: list[dict], method: str, setting: str) -> dict | None:
    return next(
        (r for r in runs if r["method"] == method and r["setting"] == setting and "ratio_f64" in r),
        None,
    )


def targets(results: dict) -> list[dict]:
    rows = []
    for ds, res in results["datasets"].items():
        runs = res["runs"]
        for pt in ("P1", "P2"):
            be, ref = _find(runs, "balerext_bounded", pt), _best_reference(runs, pt)
            if be and ref:
                f = be["ratio_f64"] / ref["ratio_f64"]
                rows.append(
                    {
                        "dataset": ds,
                        "target": f"bounded ≥ 1.25× best per-column reference at {pt}",
                        "measured": f"{be['ratio_f64']:.2f}× vs {ref['method']} "
                        f"{ref['ratio_f64']:.2f}× → {f:.2f}×"
                        + ("" if be["errors"]["bounds_met"] else " (bounds NOT met)"),
                        "met": f >= 1.25 and be["errors"]["bounds_met"],
                    }
                )
        for r in runs:
            if r["method"] != "baler_0.0.6" or "ratio_f64" not in r:
                continue
            be = _find(runs, "balerext_latent", f"latent {r['latent']} float32")
            if not be:
                continue
            f = r["errors"]["nrms"] / be["errors"]["nrms"]
            rows.append(
                {
                    "dataset": ds,
                    "target": f"latent mode ≥ 5× lower RMS error than "
                    f"Baler 0.0.6 (latent {r['latent']})",
                    "measured": f"normalised RMS {be['errors']['nrms']:.4g} vs "
                    f"{r['errors']['nrms']:.4g} → {f:.1f}× lower",
                    "met": f >= 5,
                }
            )
            like = _find(runs, "balerext_latent", f"latent {r['latent']} float64 like Baler")
            if like:
                f = r["errors"]["nrms"] / like["errors"]["nrms"]
                rows.append(
                    {
                        "dataset": ds,
                        "target": f"like for like (min-max, same schedule,"
                        f" float64 latent): RMS error vs Baler 0.0.6 (latent "
                        f"{r['latent']})",
                        "measured": f"normalised RMS {like['errors']['nrms']:.4g} vs "
                        f"{r['errors']['nrms']:.4g} → {f:.2f}× lower; ratio "
                        f"{like['ratio_f64']:.2f} vs {r['ratio_f64']:.2f}",
                        "met": None,
                    }
                )
            for what in ("compress", "decompress"):
                f = be[f"{what}_MBps"] / r[f"{what}_MBps"]
                rows.append(
                    {
                        "dataset": ds,
                        "target": f"{what} ≥ 10× Baler 0.0.6 throughput (latent {r['latent']})",
                        "measured": f"{be[f'{what}_MBps']:.1f} vs {r[f'{what}_MBps']:.1f} MB/s → "
                        f"{f:.1f}×",
                        "met": f >= 10,
                    }
                )
        if res.get("baler_note"):
            rows.append(
                {
                    "dataset": ds,
                    "target": "Baler 0.0.6 comparisons",
                    "measured": res["baler_note"],
                    "met": None,
                }
            )
        be = _find(runs, "balerext_bounded", "P1")
        if be and "fit" in be:
            fit = be["fit"]
            if "failed" in fit:
                rows.append(
                    {
                        "dataset": ds,
                        "target": "top-mass shift < 1σ_stat (bounded P1)",
                        "measured": f"fit failed: {fit['failed']}",
                        "met": False,
                    }
                )
            else:
                rows.append(
                    {
                        "dataset": ds,
                        "target": "top-mass shift < 1σ_stat (bounded P1)",
                        "measured": f"Δm = {fit['delta_mass']:+.4f} GeV = "
                        f"{fit['shift_sigma_stat']:.3f} σ_stat",
                        "met": fit["shift_sigma_stat"] < 1,
                    }
                )
    return rows


# ----------------------------------------------------------------------------- report
def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in (
        "baler_ext",
        "numpy",
        "torch",
        "zstandard",
        "blosc2",
        "numcodecs",
        "pysz",
        "zfpy",
        "uproot",
        "baler-compressor",
        "iminuit",
    ):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _machine() -> str:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} logical CPUs"


def _fmt(x: float | None, spec: str = ".3g") -> str:
    return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def _label(r: dict) -> str:
    return f"{r['method']} ({r['setting']})"


def write_plots(results: dict, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    dsets = list(results["datasets"])
    for cls in CLASSES:
        fig, axes = plt.subplots(1, len(dsets), figsize=(6.5 * len(dsets), 4.8), squeeze=False)
        for ax, ds in zip(axes[0], dsets, strict=True):
            runs = [
                r
                for r in results["datasets"][ds]["runs"]
                if "ratio_f64" in r and cls in r["errors"]["classes"]
            ]
            if not runs:
                ax.text(
                    0.5,
                    0.5,
                    f"no {cls} columns in {ds}",
                    ha="center",
                    va="center",
                    transform=ax.transAxes,
                )
                ax.set_axis_off()
                continue
            series: dict[str, list[tuple[float, float]]] = {}
            for r in runs:
                key = r["method"] if r.get("scale") is not None else _label(r)
                series.setdefault(key, []).append(
                    (r["errors"]["classes"][cls]["rms"], r["ratio_f64"])
                )
            for key, pts in sorted(series.items()):
                pts = sorted(p for p in pts if p[0] > 0)
                if not pts:
                    continue
                xs, ys = zip(*pts, strict=True)
                style = "o-" if len(pts) > 1 else "s"
                lw = 2.5 if key.startswith("balerext") else 1.2
                ax.plot(xs, ys, style, label=key, lw=lw, ms=5)
            lossless = [
                r["ratio_f64"]
                for r in runs
                if r["family"] in ("lossless", "root") and r["errors"]["classes"][cls]["rms"] == 0
            ]
            if lossless:
                ax.axhline(
                    max(lossless),
                    color="k",
                    ls="--",
                    lw=1,
                    label=f"best lossless ({max(lossless):.2f}×)",
                )
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(f"RMS absolute error, {cls} columns")
            ax.set_ylabel("compression ratio vs raw float64")
            ax.set_title(f"{ds}: {cls}")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=6, loc="best")
        fig.tight_layout()
        p = out_dir / f"rd_{cls}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    return paths


def write_markdown(results: dict, path: Path) -> None:
    L = [
        "# baler_ext vs the alternatives (issue 7)",
        "",
        f"- date: {results['date']}",
        f"- machine: {results['machine']}",
        f"- command: `{results['command']}` ({results['seconds'] / 60:.1f} min)",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in results["versions"].items()),
        f"- epochs: {results['epochs']} for every autoencoder (baler_ext and Baler); "
        "sweep scales of P1: " + ", ".join(f"{s:g}" for s in results["scales"]),
        "",
        "Each dataset is split in two halves; the autoencoders are trained on the first and "
        "every method compresses the second. *ratio* = raw bytes of the float columns "
        "(float64 or float32) / compressed bytes. MB/s = raw float64 bytes / wall time, one "
        "process with one thread (`OMP_NUM_THREADS=1`); for baler_ext this is the time of "
        "the `compress`/`decompress` stage functions including Parquet I/O, for the "
        "references in-memory; Baler's are its `compressor.run`/`decompressor.run` plus "
        "writing/reading its `.npz`. *RSS* = peak resident memory (`VmHWM`) of the "
        "method's own process (interpreter + imports, torch for the autoencoders, + data). "
        "Errors are measured after rounding to the stored "
        "dtype; *max/bound* is the largest error divided by its bound (≤ 1 means every value "
        "met it). Δm = shift of the fitted top mass (gauss + poly1, 120–230 GeV, on `mass`) "
        "in units of the original fit's statistical error. See `docs/benchmarks.md`.",
        "",
    ]
    tg = results["targets"]
    L += ["## Targets", "", "| dataset | target | measured | met |", "|---|---|---|---|"]
    for t in tg:
        met = "n/a" if t["met"] is None else ("**yes**" if t["met"] else "**no**")
        L.append(f"| {t['dataset']} | {t['target']} | {t['measured']} | {met} |")
    L.append("")
    for ds, res in results["datasets"].items():
        L += [
            f"## {ds}",
            "",
            f"{res['rows_compressed']} rows compressed ({res['rows_total']} in all), "
            f"columns {', '.join(res['columns'])} ({'/'.join(res['dtypes'])}); raw "
            f"{res['raw_float64'] / 1e6:.2f} MB as float64, {res['raw_float32'] / 1e6:.2f} "
            "MB as float32.",
            "",
        ]
        if "fit_original" in res:
            f = res["fit_original"]
            L += [
                f"Original fit: m = {f['mass']:.3f} ± {f['mass_err']:.3f} GeV, σ = "
                f"{f['width']:.3f} ± {f['width_err']:.3f} GeV.",
                "",
            ]
        else:
            L += [
                "No top-mass fit: the CMS tutorial jets are small-radius jets with no "
                "single-jet top peak (Δm column: –).",
                "",
            ]
        for k, v in res["training"].items():
            if "train_s" in v:
                L.append(f"- trained {k}: {v['train_s']:.0f} s")
            else:
                L.append(f"- training {k} failed: {v.get('error')}")
        if res.get("baler_patches"):
            L.append("- Baler 0.0.6 run-time patches: " + "; ".join(res["baler_patches"]))
        if res.get("baler_note"):
            L.append(f"- {res['baler_note']}")
        L += [
            "",
            "| method | setting | bytes | ratio f64 | ratio f32 | max/bound | "
            "RMS momenta (GeV) | RMS angles | RMS dimless | max momenta | comp MB/s | "
            "decomp MB/s | RSS MB | Δm (σ_stat) |",
            "|" + "---|" * 14,
        ]
        for r in res["runs"]:
            if "skipped" in r or "error" in r:
                L.append(
                    f"| {r['method']} | {r['setting']} | "
                    f"{r.get('skipped') or 'failed: ' + r['error']} |" + " |" * 11
                )
                continue
            e = r["errors"]
            c = e["classes"]
            mb = e.get("max_err_over_bound")
            mb_s = "–" if mb is None else (f"{mb:.4f}" + ("" if e["bounds_met"] else " ✗"))
            fit = r.get("fit")
            dm = (
                "–"
                if not fit
                else (
                    "failed"
                    if "failed" in fit
                    else f"{fit['delta_mass']:+.3f} ({fit['shift_sigma_stat']:.2f})"
                )
            )
            L.append(
                f"| {r['method']} | {r['setting']} | {r['bytes']} | {r['ratio_f64']:.2f} | "
                f"{r['ratio_f32']:.2f} | {mb_s} | "
                f"{_fmt(c.get('momenta', {}).get('rms'))} | "
                f"{_fmt(c.get('angles', {}).get('rms'))} | "
                f"{_fmt(c.get('dimensionless', {}).get('rms'))} | "
                f"{_fmt(c.get('momenta', {}).get('max'))} | "
                f"{r['compress_MBps']:.1f} | {r['decompress_MBps']:.1f} | "
                f"{r['peak_rss_mb']:.0f} | {dm} |"
            )
        L.append("")
    L += ["## Rate–distortion", ""]
    L += [f"![{cls}](rd_{cls}.png)" for cls in CLASSES]
    L += [
        "",
        "Bounds: P1 = rel 1e-2 for pt, mass, energy; abs 1e-3 for eta, phi; abs 1 GeV "
        "for px, py, pz; abs 1e-3 for the fractions and substructure. P2 = ten times "
        "tighter. CMS tutorial jets (float32): rel 1e-2 on Jet_E, abs 1 GeV on "
        "Jet_Px/Py/Pz, abs 1e-3 on Jet_btag (P2 ten times tighter). The sweep multiplies "
        "every bound of P1 by the scale.",
        "",
    ]
    path.write_text("\n".join(L))


# ----------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = ap.add_mutually_exclusive_group()
    g.add_argument(
        "--quick", action="store_true", help="6000 rows, 2 epochs, P1/P2 only, one latent size (CI)"
    )
    g.add_argument("--full", action="store_true", help="all rows, the bound sweep (default)")
    ap.add_argument("--rows", type=int, help="cap on the rows of each dataset (both halves)")
    ap.add_argument("--epochs", type=int, help="epochs of every autoencoder (full: 20)")
    ap.add_argument(
        "--scales",
        type=float,
        nargs="+",
        help="multipliers of P1 (1 = P1, 0.1 = P2); full: 3 1 0.3 0.1 0.03",
    )
    ap.add_argument("--datasets", default="pythia_ttbar,cms_tutorial")
    ap.add_argument("--methods", help="comma-separated subset of methods (default: all)")
    ap.add_argument("--no-baler", action="store_true", help="leave Baler 0.0.6 out")
    ap.add_argument(
        "--train-threads",
        type=int,
        default=2,
        help="torch threads of the training jobs (default 2)",
    )
    ap.add_argument(
        "--baler-latents",
        type=int,
        nargs="+",
        help="latent sizes at which Baler runs (default: all baler_ext ones)",
    )
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/baler_ext_bench"))
    ap.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks")
    ap.add_argument(
        "--from-json", type=Path, help="only re-render RESULTS.md and the plots from a results.json"
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.rows = args.rows or 6000
        args.epochs = args.epochs or 2
        args.scales = args.scales or [1.0, 0.1]
    else:
        args.epochs = args.epochs or 20
        args.scales = args.scales or [3.0, 1.0, 0.3, 0.1, 0.03]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("baler_ext").setLevel(logging.WARNING)
    if args.from_json:
        results = json.loads(args.from_json.read_text())
        results["targets"] = targets(results)
        args.out_dir.mkdir(parents=True, exist_ok=True)
        write_plots(results, args.out_dir)
        write_markdown(results, args.out_dir / "RESULTS.md")
        return 0
    if not SHARED.is_dir():
        log.error("needs the shared data folder %s", SHARED)
        return 2
    args.workdir.mkdir(parents=True, exist_ok=True)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results: dict = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": _machine(),
        "versions": _versions(),
        "command": "python -m benchmarks.run " + " ".join(sys.argv[1:] if argv is None else argv),
        "epochs": args.epochs,
        "scales": args.scales,
        "datasets": {},
    }
    for ds in args.datasets.split(","):
        results["datasets"][ds] = bench_dataset(ds, args, args.workdir)
    results["seconds"] = time.perf_counter() - t0
    results["targets"] = targets(results)
    (args.out_dir / "results.json").write_text(json.dumps(results, indent=1, default=float))
    write_plots(results, args.out_dir)
    write_markdown(results, args.out_dir / "RESULTS.md")
    log.info("wrote %s", args.out_dir / "RESULTS.md")
    for t in results["targets"]:
        log.info("%s | %s | %s | %s", t["dataset"], t["target"], t["measured"], t["met"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
