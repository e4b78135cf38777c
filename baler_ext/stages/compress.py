"""``--mode compress``: each input file -> one ``output/compressed/<name>.baler``."""

from __future__ import annotations

import base64
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from baler_ext import __version__
from baler_ext.codec import events, modes
from baler_ext.codec.container import (
    DIGEST_KEY,
    ContainerReader,
    ContainerWriter,
)
from baler_ext.codec.digest import chunk_digest, output_context, platform_fingerprint
from baler_ext.config import CompressionConfig, Config
from baler_ext.errors import ContainerError, InputDataError
from baler_ext.executors import run_tasks, worker_model, worker_threads
from baler_ext.io.source import Source, open_sources
from baler_ext.model_store import (
    TrainedModel,
    embed_decoder,
    load_project_model,
    weights_bytes,
)
from baler_ext.project import CONTAINER_SUFFIX, Project, atomic_path
from baler_ext.stages.info import compute_ratios, group_sizes

log = logging.getLogger(__name__)


@dataclass
class CompressedFile:
    """Summary of one written container."""

    source: Path
    path: Path
    rows: int
    entries: int
    raw_float64_bytes: int
    sizes: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    #: of ``seconds``, the time spent decoding each chunk again for its content digest
    digest_seconds: float = 0.0

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes.values())


def ipc_bytes(table: pa.Table) -> bytes:
    """An Arrow table as an uncompressed Arrow IPC stream (zstd is applied outside)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def compress_source(source: Source, trained: TrainedModel, cfg: Config,
                    out_path: Path) -> CompressedFile:
    """Compress one source into ``out_path`` (written atomically)."""
    norm = trained.normaliser
    if source.columns != norm.columns:
        raise InputDataError(
            f"{source.path}: columns {source.columns} differ from the model's {norm.columns}; "
            "retrain with --mode train"
        )
    device = cfg.training.device  # resolved (torch imported) only if a model runs
    if cfg.compression.mode == "latent" and cfg.compression.bounds != CompressionConfig().bounds:
        log.warning("compression.bounds is ignored in latent mode, which has no error bound; "
                    "set compression.mode = \"bounded\" to apply it")
    mode = modes.get_mode(cfg.compression.mode)(trained, cfg.compression, device)
    column_dtypes = {c: source.layout.branch(c).dtype for c in norm.columns}
    # columns a conditional model needs verbatim (model zoo: ``lossless_columns``)
    lossless_cols: set[str] = {c for c in trained.lossless_columns if c in norm.columns}
    mode.configure(column_dtypes, lossless_cols)
    t0 = time.perf_counter()
    chunks_meta: list[dict] = []
    event_source: str | None = ""
    rows = entries = 0
    decoder_bytes = 0
    passthrough_level = cfg.compression.passthrough_zstd_level  # not part of the payload
    check_seconds = 0.0
    output = {  # the header entries that shape the output file (part of each digest)
        "columns": norm.columns, "column_dtypes": column_dtypes,
        "layout": source.layout.to_dict(),
        "arrow_schema": (base64.b64encode(source.arrow_schema.serialize().to_pybytes())
                         .decode() if source.arrow_schema is not None else None)}
    output = json.loads(json.dumps(output))  # as a reader will see it
    context = output_context(output)
    with atomic_path(out_path) as tmp, tmp.open("wb") as fh:
        writer = ContainerWriter(fh, level=cfg.compression.zstd_level)
        if cfg.compression.embed_decoder:
            decoder_bytes = embed_decoder(writer, trained)
        bar = tqdm(total=source.num_entries, desc=f"compress {source.path.name}", unit="entry",
                   disable=None, leave=False)
        for i, chunk in enumerate(source.chunks()):
            varying = [] if mode.bounded else norm.varying_constants(chunk.values)
            for col in varying:
                if col not in lossless_cols:
                    log.warning("column '%s' was constant in training but varies in %s: stored "
                                "losslessly", col, source.path.name)
                lossless_cols.add(col)
            if event_source == "":  # decided on the first chunk, recorded in the header
                event_source = events.source_of(chunk.counts, chunk.passthrough,
                                                cfg.compression.event_column)
            chunk_ctx = modes.ChunkContext(
                events.event_starts(event_source, chunk.counts, chunk.passthrough,
                                    len(chunk.values)),
                events.row_integers(chunk.counts, chunk.passthrough, len(chunk.values)))
            sections = mode.encode(chunk.values, chunk_ctx)
            for name, arr in sections.items():
                writer.add_array(name, i, arr, level=mode.section_level(name))
            for col in sorted(lossless_cols):
                writer.add_array(f"lossless:{col}", i, chunk.values[:, norm.columns.index(col)])
            if chunk.counts is not None:
                writer.add_array("counts", i, chunk.counts.astype(np.int64),
                                 level=passthrough_level)
            passthrough = ipc_bytes(chunk.passthrough) if chunk.passthrough.num_columns else b""
            if passthrough:
                writer.add_bytes("passthrough", i, passthrough, level=passthrough_level)
            n = len(chunk.values)
            t_check = time.perf_counter()
            digest = decoded_digest(i, mode, sections, chunk.values, sorted(lossless_cols),
                                    norm.columns, chunk.counts, passthrough, context, chunk_ctx)
            check_seconds += time.perf_counter() - t_check
            chunks_meta.append({"rows": n, "entries": chunk.entries,
                                "lossless": sorted(lossless_cols), DIGEST_KEY: digest})
            rows += n
            entries += chunk.entries
            bar.update(chunk.entries)
        bar.close()
        header = {
            "format": "baler_ext", "created_by": f"baler_ext {__version__}",
            "mode": mode.name, "mode_settings": mode.header(), "features": mode.features(),
            "model": {"hash": trained.hash, "name": trained.meta["arch"]["name"],
                      "latent_dim": trained.meta["arch"]["latent_dim"]},
            **output,
            "decoder_embedded": bool(cfg.compression.embed_decoder),
            "compression": asdict(cfg.compression),
            "normaliser": norm.to_dict(),
            "rows": rows, "entries": entries, "chunks": chunks_meta,
            "events": event_source or None,
            # what the decoder needs besides the file (stored here or beside the model:
            # decoder weights and learned probability model), so that --mode info can show
            # the ratio with the decoder without loading torch
            "decoder_bytes": decoder_bytes or weights_bytes(trained),
            "decode_platform": platform_fingerprint(device),
        }
        sizes = writer.close(header)
    result = CompressedFile(source.path, out_path, rows, entries, rows * len(norm.columns) * 8,
                            sizes, time.perf_counter() - t0, check_seconds)
    ratios = compute_ratios(group_sizes(sizes), result.raw_float64_bytes,
                            header["decoder_bytes"])
    log.info("%s -> %s: %d rows, %d bytes; vs raw float64 of the compressed columns: payload "
             "%.2fx, payload + decoder weights %.2fx, whole file (lossless columns included) "
             "%.2fx; decoding it again for the content digest took %.2f s of %.2f s",
             source.path.name, out_path.name, rows, result.total_bytes,
             ratios["payload_vs_float64"], ratios["payload_with_decoder_vs_float64"],
             ratios["file_vs_float64"], check_seconds, result.seconds)
    return result


def decoded_digest(chunk: int, mode: modes.CompressionMode, sections: dict[str, np.ndarray],
                   values: np.ndarray, lossless: list[str], columns: list[str],
                   counts: np.ndarray | None, passthrough: bytes, context: bytes,
                   chunk_ctx: modes.ChunkContext | None = None) -> dict:
    """Decode the sections just encoded, exactly as decompress will, and digest the result.

    The chunk's header entry records it (:mod:`baler_ext.codec.digest`); decompress
    refuses a chunk that decodes to anything else.
    """
    decoded = mode.decode(sections, len(values), chunk_ctx)
    idx = [columns.index(c) for c in lossless]
    decoded[:, idx] = values[:, idx]
    return chunk_digest(chunk, decoded, counts, passthrough, idx, context)


# --- the per-file task of compress, and the check behind --resume -------------------------
# Module-level functions with plain arguments (paths, the config dataclass, the model's
# folder and hash), so that dask pickles them by reference and every worker loads the model
# once from the (shared) project folder. The local executor runs the very same functions.


def compress_task(src_path: Path, cfg: Config, model_dir: Path, model_hash: str,
                  out_path: Path) -> CompressedFile:
    """Compress one input file into ``out_path`` (atomically) with the project's model."""
    worker_threads(cfg)
    trained = worker_model(model_dir, model_hash)
    return compress_source(Source(src_path, cfg.data), trained, cfg, out_path)


def completed_container(path: Path, model_hash: str, cfg: Config) -> CompressedFile | None:
    """For ``--resume``: the summary of an existing, verified container made by this model
    with this compression mode, or None when ``path`` must be (re)compressed."""
    if not path.is_file():
        return None
    try:
        with ContainerReader(path) as reader:
            h = reader.header
            if h.get("model", {}).get("hash") != model_hash:
                log.info("resume: %s was made by another model; compressing again", path.name)
                return None
            if h.get("compression") != asdict(cfg.compression):
                log.info("resume: %s has other compression settings; compressing again",
                         path.name)
                return None
            reader.verify()
            sizes = reader.section_sizes()
    except ContainerError as exc:
        log.warning("resume: %s; compressing it again", exc)
        return None
    return CompressedFile(Path(h["layout"].get("file_name", path.stem)), path, h["rows"],
                          h["entries"], h["rows"] * len(h["columns"]) * 8, sizes, 0.0)


def compress(project: Project, cfg: Config, resume: bool = False) -> list[CompressedFile]:
    """Compress every input file of the project with its trained model.

    One container per input, on ``cfg.execution.executor`` (``local`` or ``dask``; the
    containers are byte-identical either way). With ``resume``, an input whose container
    exists, verifies and was made by this model and mode is skipped.
    """
    trained = load_project_model(project)
    out_dir = project.dir("compressed")
    results: dict[int, CompressedFile] = {}
    tasks, names, todo = [], [], []
    for i, src in enumerate(open_sources(cfg)):
        out_path = out_dir / f"{src.path.stem}{CONTAINER_SUFFIX}"
        done = completed_container(out_path, trained.hash, cfg) if resume else None
        if done is not None:
            log.info("resume: skipping %s (%s exists and verifies)", src.path.name, out_path.name)
            results[i] = done
            continue
        tasks.append((src.path, cfg, project.dir("model"), trained.hash, out_path))
        names.append(src.path.name)
        todo.append(i)
    if resume and results:
        log.info("resume: %d of %d files already compressed", len(results),
                 len(results) + len(todo))
    for i, res in zip(todo, run_tasks(compress_task, tasks, names, cfg.execution, "compress"),
                      strict=True):
        results[i] = res
    return [results[i] for i in sorted(results)]
