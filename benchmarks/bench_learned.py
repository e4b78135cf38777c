"""Benchmark of the learned probability model (issue 11); not a timed test.

Boosted-top jets (``ttbar_boosted_jets.parquet``): every model is trained on the first
half of the rows and compresses the second half, at the operating points P1 and P2.
For each run the decompressed file is checked against the original with the bounds
table itself (independently of the codec), and the bits per row of every column are read
from the container's sections. Runs:

* ``learned`` (the default: rate-trained MADE with a mixture of 4 discretised logistics
  per code, event and integer context, searched order) against ``one logistic``
  (``rate.mixture = 1``, the previous model) and ``classical`` (same file,
  ``probability_model = "static"``: centre/linear/autoencoder predictors with static
  histograms) at P1 and P2;
* the high-effort rows at P1 and P2: ``rate.refit = true`` and ``rate.augment = 7``
  (:data:`EFFORT`);
* ablations at P1: the mixture on the independent columns only, without event context,
  without integer context, without both, with the polar instead of the Cartesian
  relations, and with the quantised latent of each model family as side information (its
  bits count);
* the CMS tutorial jets: trained on the four other CMS files, compressing
  ``single_top.root`` (float32 Jet_Px/Py/Pz/E/btag; rel 1e-2 on Jet_E, abs 1 GeV on
  the momenta, abs 1e-3 on btag) against the per-column quantiser + zstd-19 at the same
  bounds (``benchmarks/methods.py``'s ``quantise_zstd``).

Compress and decompress throughput are MB of float64 input per CPU-second of the stage
process (``time.process_time``; one torch/BLAS thread), the classical path measured in the
same run. Writes ``benchmarks/RESULTS_learned.md`` and ``<workdir>/results.json``.

Run: ``python benchmarks/bench_learned.py [--workdir /tmp/bench_learned] [--quick]
[--jobs 2]`` (about 40 minutes on 2 cores with ``--jobs 2``; ``--quick``: the P1/P2 rows,
the high-effort rows and the CMS check only, about 20).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script
from benchmarks.common import (
    CMS_COLUMNS,
    DATA,
    ROOT,
    SHARED,
    Table,
    bound_of,
    cms_operating_point,
    operating_point,
    write_project_config,
)

log = logging.getLogger("bench_learned")
FAMILIES = ["sae", "sae_bn", "wae", "swae", "aae", "vae", "vqvae"]


def cli(work: Path, name: str, mode: str, *sets: str) -> tuple[float, float]:
    """Run one stage in a fresh process; return (wall s, CPU s of that process)."""
    # the stage modules are imported before the clock starts: throughput, not start-up
    code = (
        "import sys, time; from baler_ext.cli import main; "
        "import baler_ext.stages.train, baler_ext.stages.compress, "
        "baler_ext.stages.decompress; "
        "t = time.process_time(); "
        f"rc = main(['--projects-dir', {str(work / 'projects')!r}, '--project', {name!r}, "
        f"'--mode', {mode!r}, '-q', *{list(sets)!r}]); "
        "print('CPU', time.process_time() - t); sys.exit(rc)"
    )
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode:
        raise RuntimeError(f"{name} {mode} failed: {out.stderr[-2000:]}")
    cpu = float([ln for ln in out.stdout.splitlines() if ln.startswith("CPU")][-1].split()[1])
    return wall, cpu


def make_project(work: Path, name: str, inputs: list[Path], sections: dict) -> Path:
    d = work / "projects" / name
    if d.exists():
        shutil.rmtree(d)
    data = {"input": [str(p) for p in inputs], "chunk_size": 100_000, **sections.pop("data", {})}
    base = {
        "data": data,
        "model": {"latent_dim": 8, "hidden": [64, 32]},
        "training": {
            "epochs": 20,
            "batch_size": 512,
            "early_stopping_patience": 0,
            "device": "cpu",
        },
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value}
    return write_project_config(d, base)


def set_inputs(work: Path, name: str, inputs: list[Path]) -> None:
    path = work / "projects" / name / "config.toml"
    text = path.read_text()
    head, rest = text.split("input = ", 1)
    rest = rest.split("\n", 1)[1]
    path.write_text(head + f"input = {json.dumps([str(p) for p in inputs])}\n" + rest)


def column_bits(container: Path, columns: list[str], rows: int) -> dict[str, float]:
    from baler_ext.codec.container import ContainerReader

    with ContainerReader(container) as r:
        sizes = r.section_sizes()
        # format 1.3 packs the learned streams into lrn/bits: each column's share is its
        # word count (lrn/words, + 1) of 4 bytes
        packed: dict[str, int] = {}
        order = (r.header["mode_settings"].get("learned") or {}).get("order", [])
        for chunk in sorted({s.chunk for s in r.sections if s.name == "lrn/words"}):
            words = r.read_array("lrn/words", chunk).astype(np.int64) - 1
            for c, w in zip(order, words.tolist(), strict=True):
                packed[c] = packed.get(c, 0) + 4 * max(w, 0)
    out = {}
    for c in columns:
        b = sum(v for k, v in sizes.items() if k.startswith((f"res/{c}/", f"lrn/{c}/", f"lin/{c}")))
        out[c] = 8 * (b + packed.get(c, 0)) / rows
    return out


def payload_bytes(container: Path) -> tuple[int, dict[str, int]]:
    from baler_ext.codec.container import ContainerReader

    with ContainerReader(container) as r:
        sizes = r.section_sizes()
    groups: dict[str, int] = {}
    for k, v in sizes.items():
        g = k.split("/")[0].split(":")[0]
        groups[g] = groups.get(g, 0) + v
    total = sum(sizes.values())
    return total - groups.get("passthrough", 0) - groups.get("counts", 0), groups


def check_bounds(
    original: np.ndarray, restored: np.ndarray, names: list[str], bounds: dict
) -> tuple[bool, dict[str, float]]:
    worst = {}
    ok = True
    for j, c in enumerate(names):
        kind, b = bound_of(bounds, c)
        lim = b if kind == "abs" else b * np.abs(original[:, j])
        err = np.abs(restored[:, j] - original[:, j])
        ok &= bool(np.all(err <= lim))
        with np.errstate(all="ignore"):
            worst[c] = float(np.max(np.where(lim > 0, err / np.where(lim > 0, lim, 1), 0)))
    return ok, worst


def floats_of(path: Path) -> tuple[list[str], np.ndarray]:
    t = pq.read_table(path)
    names = [f.name for f in t.schema if pa.types.is_floating(f.type)]
    return names, np.column_stack([t.column(c).to_numpy().astype(np.float64) for c in names])


def project_name(label: str) -> str:
    """The project folder of a run (what ``share_from`` names)."""
    return label.replace(" ", "_").replace("/", "_")


def jets_run(
    work: Path,
    label: str,
    train: Path,
    test: Path,
    bounds: dict,
    sets: list[str],
    compress_sets: list[str] | None = None,
    share_from: str | None = None,
    sections: dict | None = None,
) -> dict:
    """Train on ``train`` (or reuse ``share_from``'s model), compress and decompress
    ``test``, check every bound."""
    name = project_name(label)
    make_project(
        work,
        name,
        [train],
        {"compression": {"mode": "bounded", "bounds": bounds}, **(sections or {})},
    )
    train_s = float("nan")
    if share_from is None:
        train_s, _ = cli(work, name, "train", *sets)
    else:
        src = work / "projects" / share_from / "output" / "model"
        shutil.copytree(src, work / "projects" / name / "output" / "model")
    set_inputs(work, name, [test])
    extra = sets + (compress_sets or [])
    c_wall, c_cpu = cli(work, name, "compress", *extra)
    d_wall, d_cpu = cli(work, name, "decompress", *extra)
    out = work / "projects" / name / "output"
    container = out / "compressed" / f"{test.stem}.baler"
    names, x = floats_of(test)
    _, y = floats_of(out / "decompressed" / f"{test.stem}.parquet")
    ok, worst = check_bounds(x, y, names, bounds)
    payload, groups = payload_bytes(container)
    raw64 = x.size * 8
    settings = {}
    rate_json = out / "model" / "rate_model.json"
    if rate_json.is_file():
        meta = json.loads(rate_json.read_text())
        settings = {
            "order": meta["columns"],
            "order_method": meta["settings"].get("order_method"),
            "order_trials": meta["settings"].get("order_trials"),
            "aux": (meta.get("aux") or {}).get("names"),
            "event_context": meta["event_context"],
            "summary": meta["settings"].get("summary", {}),
        }
    r = {
        "label": label,
        "payload": payload,
        "ratio": raw64 / payload,
        "rows": len(x),
        "bits_per_row": 8 * payload / len(x),
        "bounds_ok": ok,
        "worst": worst,
        "columns": column_bits(container, names, len(x)),
        "groups": groups,
        "train_s": train_s,
        "compress_MBps_cpu": raw64 / 1e6 / c_cpu,
        "decompress_MBps_cpu": raw64 / 1e6 / d_cpu,
        "compress_wall": c_wall,
        "decompress_wall": d_wall,
        "model": settings,
    }
    log.info(
        "%s: %.2fx payload (%.1f bits/row), bounds %s, compress %.1f / decompress %.1f "
        "MB per CPU-s",
        label,
        r["ratio"],
        r["bits_per_row"],
        ok,
        r["compress_MBps_cpu"],
        r["decompress_MBps_cpu"],
    )
    return r


def cms_files(work: Path) -> tuple[list[Path], Path]:
    files = sorted((SHARED / "cms_hep_tutorial").glob("*.root"))
    test = next(f for f in files if f.name == "single_top.root")
    return [f for f in files if f != test], test


def cms_run(work: Path) -> dict:
    import uproot

    from benchmarks.methods import get_method

    train, test = cms_files(work)
    bounds = cms_operating_point(1.0)
    name = "cms_learned"
    make_project(
        work,
        name,
        train,
        {
            "data": {"tree": "events", "columns": CMS_COLUMNS},
            "model": {"latent_dim": 3, "hidden": [32, 16]},
            "compression": {"mode": "bounded", "bounds": bounds},
        },
    )
    train_s, _ = cli(work, name, "train")
    set_inputs(work, name, [test])
    _, c_cpu = cli(work, name, "compress")
    cli(work, name, "decompress")
    out = work / "projects" / name / "output"
    container = out / "compressed" / "single_top.baler"
    with uproot.open(test) as fh:
        import awkward as ak

        arr = fh["events"].arrays(CMS_COLUMNS, library="ak")
    x = np.stack([ak.to_numpy(ak.flatten(arr[c])).astype(np.float64) for c in CMS_COLUMNS], axis=1)
    with uproot.open(out / "decompressed" / "single_top.root") as fh:
        back = fh["events"].arrays(CMS_COLUMNS, library="ak")
    y = np.stack([ak.to_numpy(ak.flatten(back[c])).astype(np.float64) for c in CMS_COLUMNS], axis=1)
    ok, worst = check_bounds(x, y, CMS_COLUMNS, bounds)
    payload, groups = payload_bytes(container)
    ref = get_method("quantise_zstd")()
    table = Table(list(CMS_COLUMNS), x, ["float32"] * len(CMS_COLUMNS))
    ref_bytes = len(ref.compress(table, bounds))
    ref_ok, _ = check_bounds(
        x,
        ref.decompress(ref.compress(table, bounds)).astype(np.float32).astype(np.float64),
        CMS_COLUMNS,
        bounds,
    )
    static_name = "cms_static"
    make_project(
        work,
        static_name,
        [test],
        {
            "data": {"tree": "events", "columns": CMS_COLUMNS},
            "model": {"latent_dim": 3, "hidden": [32, 16]},
            "compression": {"mode": "bounded", "bounds": bounds, "probability_model": "static"},
        },
    )
    shutil.copytree(out / "model", work / "projects" / static_name / "output" / "model")
    cli(work, static_name, "compress")
    static_payload, _ = payload_bytes(
        work / "projects" / static_name / "output" / "compressed" / "single_top.baler"
    )
    raw32 = x.size * 4
    r = {
        "rows": len(x),
        "payload": payload,
        "ratio_vs_float32": raw32 / payload,
        "quantise_zstd_bytes": ref_bytes,
        "quantise_zstd_bounds_ok": ref_ok,
        "ratio_vs_quantise_zstd": ref_bytes / payload,
        "static_payload": static_payload,
        "ratio_static_vs_quantise_zstd": ref_bytes / static_payload,
        "bounds_ok": ok,
        "worst": worst,
        "columns": column_bits(container, CMS_COLUMNS, len(x)),
        "train_s": train_s,
        "compress_MBps_cpu": x.size * 8 / 1e6 / c_cpu,
        "groups": groups,
    }
    log.info(
        "CMS single_top: learned %d B, quantise+zstd %d B -> %.2fx; static path %.2fx; bounds %s",
        payload,
        ref_bytes,
        r["ratio_vs_quantise_zstd"],
        r["ratio_static_vs_quantise_zstd"],
        ok,
    )
    return r


def split_halves(work: Path) -> tuple[Path, Path]:
    """The shared jets' first and second halves as Parquet files in ``work``: the training
    and the compressed file of every jets run."""
    work.mkdir(parents=True, exist_ok=True)
    table = pq.read_table(DATA)
    n = table.num_rows
    train, test = work / "train_half.parquet", work / "test_half.parquet"
    pq.write_table(table.slice(0, n // 2), train)
    pq.write_table(table.slice(n // 2), test)
    return train, test


#: the settings of the high-effort rows: a second fit on training and validation rows,
#: seven rotated and reflected copies of the training events (about six times the training
#: time of the defaults on the shared jets)
EFFORT = ["--set", "rate.refit=true", "--set", "rate.augment=7"]


def planned_runs(quick: bool) -> list[dict]:
    """The jets runs as keyword arguments of :func:`jets_run` (without work and files);
    a run with ``share_from`` reuses that run's model, so it waits for it; ``long`` marks
    the runs that train longest (started first)."""
    p1, p2 = operating_point(1.0), operating_point(0.1)
    static = ["--set", 'compression.probability_model="static"']
    one = ["--set", "rate.mixture=1"]
    polar = ["--set", 'compression.relations="polar"']

    def classical(label: str, bounds: dict, learned: str, sets: list[str]) -> dict:
        """The static path compressing with the model of run ``learned``."""
        return {
            "label": label,
            "bounds": bounds,
            "sets": sets,
            "compress_sets": static,
            "share_from": project_name(learned),
        }

    runs: list[dict] = []
    for point, bounds in (("P1", p1), ("P2", p2)):
        runs += [
            {"label": f"{point} learned", "bounds": bounds, "sets": []},
            {"label": f"{point} learned, one logistic", "bounds": bounds, "sets": one},
            classical(f"{point} classical", bounds, f"{point} learned", []),
        ]
    runs += [
        {"label": f"{point} learned, refit + augment 7", "bounds": b, "sets": EFFORT, "long": True}
        for point, b in (("P1", p1), ("P2", p2))
    ]
    if quick:
        return runs
    ablations = [
        ("mixture on independent columns only", ["--set", 'rate.mixture_columns="independent"']),
        ("no event context", ["--set", 'rate.event_context="none"']),
        ("no integer context", ["--set", 'rate.integer_context="none"']),
        (
            "no context",
            ["--set", 'rate.event_context="none"', "--set", 'rate.integer_context="none"'],
        ),
        ("polar relations", polar),
    ]
    runs += [
        {"label": f"P1 learned, {name}", "bounds": p1, "sets": sets} for name, sets in ablations
    ]
    runs.append(
        classical(
            "P1 classical, polar relations",
            p1,
            "P1 learned, polar relations",
            polar,
        )
    )
    runs += [
        {
            "label": f"P1 learned + {fam} latent",
            "bounds": p1,
            "sets": ["--set", 'rate.side_information="latent"', "--set", f'model.name="{fam}"'],
        }
        for fam in FAMILIES
    ]
    return runs


def run_all(work: Path, train: Path, test: Path, plan: list[dict], jobs: int) -> list[dict]:
    """:func:`jets_run` for every planned run, ``jobs`` at a time (each stage is a
    one-thread process), the runs that reuse a model after it; results in plan order."""
    from concurrent.futures import ThreadPoolExecutor

    def one(kw: dict) -> dict:
        return jets_run(
            work, train=train, test=test, **{k: v for k, v in kw.items() if k != "long"}
        )

    # the long runs start first, so that the pool does not wait on them at the end
    first = sorted((kw for kw in plan if "share_from" not in kw), key=lambda kw: not kw.get("long"))
    later = [kw for kw in plan if "share_from" in kw]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        done = list(pool.map(one, first)) + list(pool.map(one, later))
    by_label = {r["label"]: r for r in done}
    return [by_label[kw["label"]] for kw in plan]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench_learned"))
    ap.add_argument("--quick", action="store_true", help="P1/P2, the high-effort rows and CMS only")
    ap.add_argument(
        "--jobs", type=int, default=1, help="runs at a time (each a one-thread process)"
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results file (default benchmarks/RESULTS_learned.md)",
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if not DATA.is_file():
        sys.exit(f"needs the shared data ({DATA})")
    work = args.workdir
    train, test = split_halves(work)
    runs = run_all(work, train, test, planned_runs(args.quick), max(1, args.jobs))
    cms = cms_run(work)
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    summary = {
        "runs": runs,
        "cms": cms,
        "uptime": uptime,
        "jobs": args.jobs,
        "rows": pq.read_metadata(test).num_rows,
    }
    (work / "results.json").write_text(json.dumps(summary, indent=1, default=str))
    write_markdown(summary, args.out or ROOT / "benchmarks" / "RESULTS_learned.md")


def write_markdown(s: dict, path: Path) -> None:
    runs = {r["label"]: r for r in s["runs"]}
    lines = [
        "# Learned probability model benchmark (issue 11)",
        "",
        f"Written by `benchmarks/bench_learned.py` ({s.get('jobs', 1)} runs at a time, each "
        "stage a one-thread process). Boosted-top jets: trained on the first "
        f"half, compressing the second ({s['rows']} jets, 17 float64 columns). *Ratio* = "
        "raw float64 bytes of the 17 float columns / payload (the whole container minus "
        "the lossless passthrough columns; index and header included). Every bound was "
        "checked on the decompressed file against the bounds table, independently of "
        "the codec. Throughput: MB of float64 input per CPU-second of the stage process "
        "(one thread; Parquet I/O and start-up included).",
        "",
        f"Machine: 2 shared cores; load at the end: `{s['uptime']}`.",
        "",
        "| run | payload ratio | bits/row | every bound met | compress MB/CPU-s | "
        "decompress MB/CPU-s |",
        "|---|---|---|---|---|---|",
    ]
    for r in s["runs"]:
        lines.append(
            f"| {r['label']} | {r['ratio']:.2f}x | {r['bits_per_row']:.1f} | "
            f"{r['bounds_ok']} | {r['compress_MBps_cpu']:.1f} | "
            f"{r['decompress_MBps_cpu']:.1f} |"
        )
    for point in ("P1", "P2"):
        a, b = runs.get(f"{point} learned"), runs.get(f"{point} classical")
        one = runs.get(f"{point} learned, one logistic")
        if a and b:
            lines += [
                "",
                f"{point}: the learned model's payload is "
                f"{100 * (1 - a['payload'] / b['payload']):.1f} % smaller than the "
                "classical path's on the same file and model"
                + (
                    f", {100 * (1 - a['payload'] / one['payload']):.1f} % smaller than "
                    "one logistic per code."
                    if one
                    else "."
                ),
            ]
        hi = runs.get(f"{point} learned, refit + augment 7")
        if hi and a and b:
            lines += [
                "",
                f"{point} with `rate.refit = true` and `rate.augment = 7`: "
                f"{hi['ratio']:.3f}x, {hi['bits_per_row']:.2f} bits/row, "
                f"{100 * (1 - hi['payload'] / b['payload']):.1f} % smaller than the classical "
                f"path; training {hi['train_s']:.0f} s against {a['train_s']:.0f} s with the "
                "defaults (wall, shared cores).",
            ]
    cols = list(runs["P1 learned"]["columns"])
    ablation = [r for r in s["runs"] if r["label"].startswith("P1")]
    lines += [
        "",
        "## Bits per row per column at P1",
        "",
        "*static (fixed grid)*: one histogram of the learned path's fixed-grid codes on "
        "the training file's validation split (what the learned model starts from). "
        "Other columns: the container's sections of that column (codes, signs, "
        "exceptions, linear coefficients).",
        "",
        "| column | static (fixed grid) | " + " | ".join(r["label"][3:] for r in ablation) + " |",
        "|---|---|" + "---|" * len(ablation),
    ]
    static = runs["P1 learned"]["model"].get("summary", {}).get("static_bits_per_column", {})
    for c in cols:
        row = [f"{static[c]:.2f}" if c in static else "–"]
        row += [f"{r['columns'].get(c, 0):.2f}" for r in ablation]
        lines.append(f"| {c} | " + " | ".join(row) + " |")
    lines.append(
        "| **total payload** | | "
        + " | ".join(f"**{r['bits_per_row']:.1f}**" for r in ablation)
        + " |"
    )
    m = runs["P1 learned"]["model"]
    lines += [
        "",
        f"Coding order (P1, {m.get('order_method')}): {', '.join(m.get('order', []))}. "
        f"Order search (validation bits/row after short fits): {m.get('order_trials')}. "
        f"Integer context: {m.get('aux')}; event context: {m.get('event_context')}.",
    ]
    c = s["cms"]
    lines += [
        "",
        "## CMS tutorial jets",
        "",
        "Trained on `qcd`, `ww`, `wz`, `zz`; compressing `single_top.root` "
        f"({c['rows']} jets; float32 Jet_Px, Jet_Py, Jet_Pz, Jet_E, Jet_btag; bounds "
        "rel 1e-2 on Jet_E, abs 1 GeV on the momenta, abs 1e-3 on btag).",
        "",
        "| | payload bytes | ratio vs float32 | vs quantiser + zstd-19 | every bound met |",
        "|---|---|---|---|---|",
        f"| learned | {c['payload']} | {c['ratio_vs_float32']:.2f}x | "
        f"{c['ratio_vs_quantise_zstd']:.2f}x | {c['bounds_ok']} |",
        f"| classical (static) | {c['static_payload']} | "
        f"{c['rows'] * 5 * 4 / c['static_payload']:.2f}x | "
        f"{c['ratio_static_vs_quantise_zstd']:.2f}x | – |",
        f"| per-column quantiser + zstd-19 | {c['quantise_zstd_bytes']} | "
        f"{c['rows'] * 5 * 4 / c['quantise_zstd_bytes']:.2f}x | 1.00x | "
        f"{c['quantise_zstd_bounds_ok']} |",
        "",
    ]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
