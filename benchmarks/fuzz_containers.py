"""Fuzz the ``.baler`` reader with damaged and crafted containers (issue 15).

Builds a small bounded-mode project (decoder embedded, a float32 column, an integer
passthrough column, three chunks), decompresses its container once as the reference,
then decodes thousands of altered copies with the real decompress and info code:

* ``flip``, ``truncate``, ``append``: accidental damage;
* ``index``: one field of the JSON index changed (a section entry's name, chunk, offset,
  length, CRC, size, dtype or shape, or any leaf of the header), CRC recomputed;
* ``content``: the decoded bytes of one section altered and re-framed with a valid zstd
  checksum, content size and CRC;
* ``swap``: two section entries, their data, or two whole chunks (index and sections)
  exchanged; ``remove``: a section dropped or renamed (``res/<col>/bits``, ``exc_idx``);
* ``bomb``: declared rows of 2e7 and 1e12, zstd frames of 3 GiB of zeros in a section,
  the passthrough, the decoder or the index, declared consistently or not.

Each case ends as ``identical`` (decodes to the reference, exit 0), ``error`` (a
:class:`~baler_ext.errors.BalerError`, one line, naming the file), ``wrong`` (exit 0 with
other data) or ``traceback`` (any other exception). The peak resident memory of the
process (``resource.getrusage``) and the peak of Python and numpy allocations
(``tracemalloc``) are measured for each memory bomb and for the unaltered file.

Usage::

    python -m benchmarks.fuzz_containers --cases 2000 --seed 0 \\
        --out benchmarks/RESULTS_fuzz.json

writes the counts per kind and outcome, the failing cases and the memory figures.
``tests/codec/test_fuzz.py`` runs a few hundred cases of the same engine in CI.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import platform
import resource
import sys
import tempfile
import time
import tracemalloc
import warnings
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zstandard

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from baler_ext.codec.container import (  # noqa: E402
    _PREAMBLE,
    _TRAILER,
    END_MAGIC,
)

PROJECT = "fuzz"
GIB3 = 3 << 30
KINDS = ("flip", "truncate", "append", "index", "content", "swap", "remove")


# --------------------------------------------------------------------------- the project


VARIANTS = ("bounded", "latent-jagged")


def _write_inputs(root: Path, variant: str, rows: int) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(3)
    if variant == "bounded":
        data = root / "jets.parquet"
        pq.write_table(
            pa.table(
                {
                    "event": pa.array(np.arange(rows), pa.int32()),
                    "pt": rng.exponential(100, rows) + 300,
                    "eta": rng.uniform(-2.4, 2.4, rows),
                    "mass": rng.normal(172, 15, rows),
                    "frac": pa.array(rng.uniform(0, 1, rows).astype(np.float32)),
                }
            ),
            data,
        )
        return data
    import awkward as ak
    import uproot

    data = root / "jets.root"
    counts = rng.integers(0, 5, rows)  # jets per event, some events without any
    n = int(counts.sum())
    jets = ak.zip(
        {
            "pt": ak.unflatten(rng.exponential(50, n) + 20, counts),
            "eta": ak.unflatten(rng.uniform(-2.4, 2.4, n), counts),
            "mass": ak.unflatten(rng.normal(10, 3, n).astype(np.float32), counts),
        }
    )
    with uproot.recreate(data) as f:  # mktree: a TTree (nJet + Jet_*), not an RNTuple
        f.mktree("Events", {"Jet": jets.type.content, "run": np.int32})
        f["Events"].extend({"Jet": jets, "run": rng.integers(1, 4, rows).astype(np.int32)})
    return data


def build_project(root: Path, rows: int = 1500, variant: str = "bounded") -> Path:
    """Train and compress a small project under ``root``; return the ``projects`` folder.

    ``bounded``: a flat Parquet table (a float32 column, an integer passthrough column)
    in bounded mode with the decoder embedded; ``latent-jagged``: a ROOT jet collection
    (counts, events without jets) in latent mode, decompressed to Parquet.
    """
    from baler_ext.cli import main
    from baler_ext.config import toml_value

    root.mkdir(parents=True, exist_ok=True)
    data = _write_inputs(root, variant, rows)
    sections: dict[str, dict[str, Any]] = {
        "data": {"input": [str(data)], "chunk_size": rows // 3},
        "model": {"hidden": [8], "latent_dim": 2},
        "training": {"epochs": 1, "seed": 1, "early_stopping_patience": 0},
        "compression": {"mode": "bounded", "embed_decoder": True},
    }
    if variant == "latent-jagged":
        sections["data"].update(tree="Events", columns=["Jet_*"])
        sections["compression"] = {"mode": "latent"}
        sections["output"] = {"format": "parquet"}
    folder = root / "projects" / PROJECT
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for name, table in sections.items():
        lines += [f"[{name}]", *(f"{k} = {toml_value(v)}" for k, v in table.items()), ""]
    (folder / "config.toml").write_text("\n".join(lines))
    for mode in ("train", "compress"):
        rc = main(
            ["--projects-dir", str(root / "projects"), "--project", PROJECT, "--mode", mode, "-q"]
        )
        if rc != 0:
            raise RuntimeError(f"building the fuzz project failed at --mode {mode}")
    return root / "projects"


# --------------------------------------------------------------------------- the container


@dataclass
class Parsed:
    """A container split into its preamble, its section frames (index order) and index."""

    preamble: bytes
    frames: list[bytes]
    index: dict[str, Any]


def parse(data: bytes) -> Parsed:
    offset, length, _, _ = _TRAILER.unpack(data[-_TRAILER.size :])
    index = json.loads(zstandard.ZstdDecompressor().decompress(data[offset : offset + length]))
    frames = [data[s["offset"] : s["offset"] + s["length"]] for s in index["sections"]]
    return Parsed(data[: _PREAMBLE.size], frames, index)


def frame(raw: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=3, write_checksum=True, write_content_size=True).compress(
        raw
    )


def zero_bomb(size: int = GIB3) -> bytes:
    """A valid zstd frame of ``size`` zero bytes (about 100 kB for 3 GiB)."""
    cobj = zstandard.ZstdCompressor(
        level=1, write_checksum=True, write_content_size=True
    ).compressobj(size=size)
    block = bytes(1 << 24)
    parts = [cobj.compress(block) for _ in range(size // len(block))]
    parts.append(cobj.compress(bytes(size % len(block))))
    parts.append(cobj.flush())
    return b"".join(parts)


def build(
    p: Parsed,
    post: Callable[[dict[str, Any]], None] | None = None,
    index_frame: bytes | None = None,
) -> bytes:
    """Lay the frames out again with correct offsets, lengths and CRCs; ``post`` then
    alters the index (crafted fields), whose CRC is recomputed."""
    index = copy.deepcopy(p.index)
    out = bytearray(p.preamble)
    for entry, fr in zip(index["sections"], p.frames, strict=True):
        entry.update(offset=len(out), length=len(fr), crc32=zlib.crc32(fr))
        out += fr
    if post is not None:
        post(index)
    idx = index_frame if index_frame is not None else frame(json.dumps(index).encode())
    offset = len(out)
    out += idx
    out += _TRAILER.pack(offset, len(idx), zlib.crc32(idx), END_MAGIC)
    return bytes(out)


# --------------------------------------------------------------------------- mutations


def _leaves(node: Any, path: tuple = ()) -> list[tuple]:
    if isinstance(node, dict):
        return [leaf for k, v in node.items() for leaf in _leaves(v, (*path, k))] or [path]
    if isinstance(node, list):
        return [leaf for i, v in enumerate(node) for leaf in _leaves(v, (*path, i))] or [path]
    return [path]


def _set(node: Any, path: tuple, value: Any) -> None:
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def _get(node: Any, path: tuple) -> Any:
    for key in path:
        node = node[key]
    return node


def _other_value(value: Any, rng: np.random.Generator, names: list[str]) -> Any:
    """A plausible wrong value of the same or another JSON type."""
    choice = int(rng.integers(6))
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return [value + 1, value - 1, 0, -1, value * 2 + 3, 1 << 40][choice]
    if isinstance(value, float):
        return [value * 2, -value, 0.0, value + 1e-9, 1e308, value * (1 + 1e-15)][choice]
    if isinstance(value, str):
        return [value + "x", value[:-1], "", str(rng.choice(names)), value.upper(), "<f8"][choice]
    if value is None:
        return [0, "x", [], {}, 1.5, True][choice]
    return [None, 0, "x", [], {}, [1, 2]][choice]


def mutate_index(p: Parsed, rng: np.random.Generator) -> tuple[str, bytes]:
    names = sorted({s["name"] for s in p.index["sections"]})
    if rng.random() < 0.5:  # a section entry's field
        i = int(rng.integers(len(p.index["sections"])))
        entry = p.index["sections"][i]
        field = str(rng.choice(sorted(entry)))
        options: dict[str, list[Any]] = {
            "dtype": ["<f8", "<f4", "|u1", "<i8", "<u4", "|O", "<c16", "V8", "<U4", ">f8", "x"],
            "shape": [
                [-1],
                [1 << 40],
                [],
                [0],
                [2, 3],
                [entry.get("raw_size", 8)],
                list(reversed(entry.get("shape", []))),
            ],
            "chunk": [-1, 0, 1, 2, 3, -2, 10**12, "0", None],
            "name": [*names, "", "x" * 1000, 7],
        }
        if field in options:
            value = options[field][int(rng.integers(len(options[field])))]
        else:
            value = _other_value(entry[field], rng, names)

        def post(index: dict) -> None:
            index["sections"][i][field] = value
            if (
                field in ("dtype", "shape")
                and rng.random() < 0.5
                and isinstance(value, list)
                and all(isinstance(d, int) and d >= 0 for d in value)
            ):
                dt = np.dtype(index["sections"][i].get("dtype", "|u1"))
                index["sections"][i]["raw_size"] = int(np.prod(value)) * dt.itemsize

        return f"index section {entry['name']}:{entry['chunk']} {field}={value!r:.40}", build(
            p, post
        )
    leaves = [lf for lf in _leaves(p.index["header"]) if lf]
    path = leaves[int(rng.integers(len(leaves)))]
    value = _other_value(_get(p.index["header"], path), rng, names)
    return f"index header {'/'.join(map(str, path))}={value!r:.40}", build(
        p, lambda index: _set(index["header"], path, value)
    )


def mutate_content(p: Parsed, rng: np.random.Generator) -> tuple[str, bytes]:
    i = int(rng.integers(len(p.frames)))
    entry = p.index["sections"][i]
    raw = bytearray(zstandard.ZstdDecompressor().decompress(p.frames[i]))
    how = int(rng.integers(4)) if raw else 3
    if how == 0:
        pos = int(rng.integers(len(raw)))
        raw[pos] ^= 1 << int(rng.integers(8))
    elif how == 1:
        pos = int(rng.integers(len(raw)))
        raw[pos] = int(rng.integers(256))
    elif how == 2 and entry.get("dtype"):
        arr = np.frombuffer(bytes(raw), entry["dtype"]).copy().reshape(-1)
        if arr.size:
            j = int(rng.integers(arr.size))
            arr[j] = arr[j] + 1 if arr.dtype.kind in "iub" else arr[j] * (1 + 1e-15) + 1e-300
            raw = bytearray(arr.tobytes())
    else:
        raw = bytearray(bytes(reversed(raw)))
    q = copy.deepcopy(p)
    q.frames[i] = frame(bytes(raw))
    return f"content {entry['name']}:{entry['chunk']} way {how}", build(q)


def mutate_swap(p: Parsed, rng: np.random.Generator) -> tuple[str, bytes]:
    n = len(p.frames)
    a, b = (int(x) for x in rng.choice(n, 2, replace=False))
    sa, sb = p.index["sections"][a], p.index["sections"][b]
    way = int(rng.integers(3))
    q = copy.deepcopy(p)
    if way == 0:  # the two entries' names
        q.index["sections"][a]["name"], q.index["sections"][b]["name"] = sb["name"], sa["name"]
        return f"swap names {sa['name']}:{sa['chunk']} <-> {sb['name']}:{sb['chunk']}", build(q)
    if way == 1:  # their data (and declared type)
        q.frames[a], q.frames[b] = p.frames[b], p.frames[a]
        for key in ("raw_size", "dtype", "shape"):
            va, vb = sa.get(key), sb.get(key)
            for entry, v in ((q.index["sections"][a], vb), (q.index["sections"][b], va)):
                if v is None:
                    entry.pop(key, None)
                else:
                    entry[key] = v
        return f"swap data {sa['name']}:{sa['chunk']} <-> {sb['name']}:{sb['chunk']}", build(q)
    # two whole chunks, consistently: header entries and section chunk numbers
    chunks = len(p.index["header"]["chunks"])
    c0, c1 = (int(x) for x in rng.choice(chunks, 2, replace=False))
    hc = q.index["header"]["chunks"]
    hc[c0], hc[c1] = hc[c1], hc[c0]
    for entry in q.index["sections"]:
        if entry["chunk"] in (c0, c1):
            entry["chunk"] = c1 if entry["chunk"] == c0 else c0
    return f"swap chunks {c0} <-> {c1}", build(q)


def mutate_remove(p: Parsed, rng: np.random.Generator) -> tuple[str, bytes]:
    res = [
        i
        for i, s in enumerate(p.index["sections"])
        if s["name"].endswith(("/bits", "exc_idx", "exc_val", "/sign", "/counts", "/head"))
    ]
    pool = res if res and rng.random() < 0.7 else list(range(len(p.frames)))
    i = pool[int(rng.integers(len(pool)))]
    name = p.index["sections"][i]["name"]
    q = copy.deepcopy(p)
    if rng.random() < 0.5:
        del q.frames[i]
        del q.index["sections"][i]
        return f"remove {name}", build(q)
    q.index["sections"][i]["name"] = name + "_renamed"
    return f"rename {name}", build(q)


def mutate_bytes(data: bytes, kind: str, rng: np.random.Generator) -> tuple[str, bytes]:
    if kind == "flip":
        pos = int(rng.integers(len(data)))
        out = bytearray(data)
        out[pos] ^= int(rng.integers(1, 256))
        return f"flip at {pos}", bytes(out)
    if kind == "truncate":
        keep = int(rng.integers(len(data)))
        return f"truncate to {keep}", data[:keep]
    extra = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
    return f"append {len(extra)} bytes", data + extra


def mutate(data: bytes, p: Parsed, kind: str, rng: np.random.Generator) -> tuple[str, bytes]:
    if kind in ("flip", "truncate", "append"):
        return mutate_bytes(data, kind, rng)
    return {
        "index": mutate_index,
        "content": mutate_content,
        "swap": mutate_swap,
        "remove": mutate_remove,
    }[kind](p, rng)


def bombs(p: Parsed) -> list[tuple[str, bytes]]:
    """The memory bombs of the issue and their consistent variants."""
    zeros = zero_bomb()
    out: list[tuple[str, bytes]] = []

    def rows(value: int, consistent: bool) -> Callable[[dict], None]:
        def post(index: dict) -> None:
            h = index["header"]
            h["chunks"][0]["rows"] = value
            if consistent:
                h["chunks"][0]["entries"] = value
                h["rows"] = sum(c["rows"] for c in h["chunks"])
                h["entries"] = sum(c["entries"] for c in h["chunks"])

        return post

    for value in (20_000_000, 10**12):
        for consistent in (False, True):
            out.append(
                (f"bomb rows={value:g} consistent={consistent}", build(p, rows(value, consistent)))
            )
    targets = {
        "array section": next(
            i for i, s in enumerate(p.index["sections"]) if s["chunk"] == 0 and s.get("dtype")
        )
    }
    for name, cond in (
        ("passthrough", lambda s: s["name"] == "passthrough"),
        ("decoder", lambda s: s["name"].startswith("decoder/")),
    ):
        found = [i for i, s in enumerate(p.index["sections"]) if cond(s)]
        if found:
            targets[name] = found[0]
    for what, i in targets.items():
        for declared in (False, True):
            q = copy.deepcopy(p)
            q.frames[i] = zeros
            if declared:
                entry = q.index["sections"][i]
                entry["raw_size"] = GIB3
                if entry.get("dtype"):
                    entry["dtype"], entry["shape"] = "|u1", [GIB3]
            out.append(
                (
                    f"bomb 3 GiB zstd frame in the {what} (declared in the index: {declared})",
                    build(q),
                )
            )
    out.append(("bomb 3 GiB zstd index frame", build(p, index_frame=zeros)))
    return out


# --------------------------------------------------------------------------- running


class Runner:
    """Decode altered containers with the project's real decompress and info code."""

    def __init__(self, projects: Path, workdir: Path) -> None:
        from baler_ext.config import load_config
        from baler_ext.model_store import load_model
        from baler_ext.project import Project

        self.project = Project.locate(PROJECT, projects)
        self.cfg = load_config(self.project.config_path)
        self.trained = load_model(self.project.dir("model"))
        self.original = (self.project.dir("compressed") / "jets.baler").read_bytes()
        self.variant = "latent-jagged" if self.cfg.compression.mode == "latent" else "bounded"
        self.workdir = workdir
        self.container = workdir / "jets.baler"
        self.reference = None
        outcome, detail = self.run(self.original)
        if outcome != "decoded":
            raise RuntimeError(f"the unaltered container does not decode: {detail}")
        self.reference = self._last

    def run(self, data: bytes) -> tuple[str, str]:
        """``(outcome, detail)`` of decoding ``data``: decoded/identical/wrong/error/traceback."""
        self.container.write_bytes(data)
        out = self.workdir / "out.parquet"
        out.unlink(missing_ok=True)
        outcome, detail = self._decode(out)
        parts = list(self.workdir.glob(".out.parquet.*.part"))
        if parts:
            return "traceback", f"left a partial file {parts[0].name} ({outcome}: {detail})"
        return outcome, detail

    def _decode(self, out: Path) -> tuple[str, str]:
        import pyarrow.parquet as pq

        from baler_ext.errors import BalerError
        from baler_ext.stages.decompress import decompress_file
        from baler_ext.stages.info import describe

        try:
            describe(self.container)
            decompress_file(self.container, self.trained, self.cfg, out)
            self._last = pq.read_table(out)
        except BalerError as exc:
            text = str(exc)
            if "\n" in text or str(self.container) not in text:
                return "traceback", f"unclear message: {text[:300]}"
            return "error", text[:300]
        except Exception as exc:  # what the fuzzer looks for
            return "traceback", f"{type(exc).__name__}: {str(exc)[:300]}"
        if self.reference is None:
            return "decoded", ""
        return ("identical", "") if self._last.equals(self.reference) else ("wrong", "")


def peak_rss_mb() -> float:
    scale = 1 if platform.system() == "Darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def fuzz(projects: Path, cases: int, seed: int, with_bombs: bool = True) -> dict[str, Any]:
    """Run ``cases`` random cases (spread over :data:`KINDS`) and the bombs."""
    logging.getLogger().setLevel(logging.ERROR)
    warnings.simplefilter("ignore", RuntimeWarning)  # numpy on crafted numbers
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        runner = Runner(projects, Path(tmp))
        data = runner.original
        parsed = parse(data)
        counts: Counter[tuple[str, str]] = Counter()
        bad: list[dict[str, str]] = []
        t0 = time.perf_counter()
        for n in range(cases):
            kind = KINDS[n % len(KINDS)]
            what, altered = mutate(data, parsed, kind, rng)
            outcome, detail = runner.run(altered)
            counts[(kind, outcome)] += 1
            if outcome in ("wrong", "traceback"):
                bad.append({"kind": kind, "case": what, "outcome": outcome, "detail": detail})
        seconds = time.perf_counter() - t0
        memory: list[dict[str, Any]] = []
        if with_bombs:
            before = peak_rss_mb()
            control = [("control: the unaltered file", data)]
            for what, altered in control + bombs(parsed):
                tracemalloc.start()
                outcome, detail = runner.run(altered)
                traced = tracemalloc.get_traced_memory()[1] / 2**20
                tracemalloc.stop()
                memory.append(
                    {
                        "case": what,
                        "file_bytes": len(altered),
                        "outcome": outcome,
                        "peak_traced_mb": traced,
                        "peak_rss_growth_mb": peak_rss_mb() - before,
                        "detail": detail,
                    }
                )
                if what.startswith("control"):
                    continue
                counts[("bomb", outcome)] += 1
                if outcome in ("wrong", "traceback"):
                    bad.append({"kind": "bomb", "case": what, "outcome": outcome, "detail": detail})
    return {
        "variant": runner.variant,
        "cases": cases,
        "seed": seed,
        "container_bytes": len(data),
        "seconds": seconds,
        "counts": {f"{k}/{o}": v for (k, o), v in sorted(counts.items())},
        "bad": bad,
        "memory": memory,
        "baseline_peak_rss_mb": peak_rss_mb(),
    }


def report_md(result: dict[str, Any]) -> str:
    kinds = [*KINDS, "bomb"]
    outcomes = ("identical", "error", "wrong", "traceback")
    lines = [
        f"## {result.get('variant', 'bounded')}: {result['cases']} random cases + "
        f"{max(len(result['memory']) - 1, 0)} memory bombs, seed {result['seed']}",
        "",
        f"Container of {result['container_bytes']} bytes; "
        f"{result['seconds']:.1f} s for the random cases on "
        f"{platform.machine()} with {os.cpu_count()} cores (shared, loaded).",
        "",
        "| kind | " + " | ".join(outcomes) + " |",
        "|---" * (len(outcomes) + 1) + "|",
    ]
    for k in kinds:
        row = [str(result["counts"].get(f"{k}/{o}", 0)) for o in outcomes]
        lines.append(f"| {k} | " + " | ".join(row) + " |")
    total = [
        sum(v for key, v in result["counts"].items() if key.endswith("/" + o)) for o in outcomes
    ]
    lines.append("| **all** | " + " | ".join(f"**{t}**" for t in total) + " |")
    lines += [
        "",
        "Memory: the peak of Python and numpy allocations while decoding each file "
        "(tracemalloc; zstd output buffers are Python bytes and counted) and the growth "
        "of the process's peak resident memory (getrusage; 0 when below an earlier "
        "peak). The control is the unaltered file.",
        "",
        "| case | file bytes | outcome | peak traced (MB) | peak RSS growth (MB) |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {m['case']} | {m['file_bytes']} | {m['outcome']} | "
        f"{m['peak_traced_mb']:.2f} | {m['peak_rss_growth_mb']:.1f} |"
        for m in result["memory"]
    ]
    if result["bad"]:
        lines += ["", "Failures:", ""] + [
            f"- {b['kind']}: {b['case']} -> {b['outcome']} {b['detail']}" for b in result["bad"]
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=2100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--projects",
        type=Path,
        default=None,
        help="an already built fuzz project folder (default: build one)",
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=VARIANTS,
        default=list(VARIANTS),
        help="the projects to build and fuzz (ignored with --projects)",
    )
    parser.add_argument("--no-bombs", action="store_true")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "RESULTS_fuzz.json")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.projects is not None:
            results.append(fuzz(args.projects, args.cases, args.seed, not args.no_bombs))
        for variant in [] if args.projects is not None else args.variants:
            projects = build_project(Path(tmp) / variant, variant=variant)
            results.append(fuzz(projects, args.cases, args.seed, not args.no_bombs))
    args.out.write_text(json.dumps(results if len(results) > 1 else results[0], indent=1))
    text = "# Container fuzzing (issue 15)\n\n" + "\n".join(report_md(r) for r in results)
    args.out.with_suffix(".md").write_text(text)
    print(text)
    return 0 if not any(r["bad"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
