"""``--mode compress``: each input file -> one ``output/compressed/<name>.baler``."""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

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
from baler_ext.codec.digest import (
    chunk_digest,
    groups_digest,
    output_context,
    platform_fingerprint,
)
from baler_ext.config import CompressionConfig, Config
from baler_ext.errors import ContainerError, InputDataError
from baler_ext.exact import (
    apply_overrides,
    override_sections,
    sentinel_arrays,
    sentinel_damage,
)
from baler_ext.executors import run_tasks, worker_model, worker_threads
from baler_ext.io.layout import GroupPlan
from baler_ext.io.parquet import schema_to_header
from baler_ext.io.source import Source, open_sources, resolve_inputs, whole_layout
from baler_ext.model_store import (
    TrainedModel,
    embed_decoder,
    load_project_model,
    weights_bytes,
)
from baler_ext.precision import Resolved, explicit_bounds, is_lossless, resolve_precision
from baler_ext.project import CONTAINER_SUFFIX, Project, atomic_path
from baler_ext.stages.group_plan import plan as plan_groups
from baler_ext.stages.groups import (
    GROUP_PREFIX,
    GROUPS_FEATURE,
    combined_hash,
    group_project,
    is_grouped,
)
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


def compression_entries(settings: CompressionConfig) -> dict[str, Any]:
    """The header's record of the ``[compression]`` settings (format 1.4): the ones that
    differ from the defaults (what ``--mode info`` shows) and a digest of all of them
    (what ``--resume`` compares, so that a default changed by an upgrade still counts)."""
    full, defaults = _as_read(settings), _as_read(CompressionConfig())
    return {
        "compression": {k: v for k, v in full.items() if defaults.get(k) != v},
        "compression_digest": _settings_digest(settings),
    }


def _as_read(settings: CompressionConfig) -> dict[str, Any]:
    """``settings`` as a reader of the header sees them (JSON types)."""
    return json.loads(json.dumps(asdict(settings)))


def _settings_digest(settings: CompressionConfig) -> str:
    blob = json.dumps(_as_read(settings), sort_keys=True, separators=(",", ":")).encode()
    return hashlib.blake2b(blob, digest_size=16).hexdigest()


def same_settings(header: dict[str, Any], settings: CompressionConfig) -> bool:
    """Whether a container was written with ``settings`` (files before 1.4 hold them
    whole, without a digest)."""
    if "compression_digest" in header:
        return bool(header["compression_digest"] == _settings_digest(settings))
    return bool(header.get("compression") == asdict(settings))


def ipc_bytes(table: pa.Table) -> bytes:
    """An Arrow table as an uncompressed Arrow IPC stream (zstd is applied outside)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def compress_source(
    source: Source, trained: TrainedModel, cfg: Config, out_path: Path
) -> CompressedFile:
    """Compress one source into ``out_path`` (written atomically)."""
    norm = trained.normaliser
    if source.columns != norm.columns:
        raise InputDataError(
            f"{source.path}: columns {source.columns} differ from the model's {norm.columns}; "
            "retrain with --mode train"
        )
    device = cfg.training.device  # resolved (torch imported) only if a model runs
    if cfg.compression.mode == "latent" and cfg.compression.bounds != CompressionConfig().bounds:
        log.warning(
            "latent mode has no error bound: compression.bounds only sets the "
            'threshold of its error warning; set compression.mode = "bounded" to '
            "enforce it"
        )
    column_dtypes = {c: source.layout.branch(c).dtype for c in norm.columns}
    plan = column_plan(
        cfg,
        norm.columns,
        column_dtypes,
        trained.lossless_columns,
        trained.meta.get("exact_values") or {},
    )
    precision, lossless_cols, sentinels, discrete = (
        plan.precision,
        plan.lossless,
        plan.sentinels,
        plan.discrete,
    )
    mode = modes.get_mode(cfg.compression.mode)(trained, plan.mode_cfg, device)
    overrides = configure_mode(mode, column_dtypes, lossless_cols, sentinels)
    check = LatentCheck(norm.columns, precision, sentinels)
    t0 = time.perf_counter()
    chunks_meta: list[dict] = []
    event_source: str | None = ""
    rows = entries = 0
    decoder_bytes = 0
    passthrough_level = cfg.compression.passthrough_zstd_level  # not part of the payload
    check_seconds = 0.0
    output = {  # the header entries that shape the output file (part of each digest)
        "columns": norm.columns,
        "column_dtypes": column_dtypes,
        "layout": source.layout.to_dict(),
        "arrow_schema": schema_to_header(source.arrow_schema, source.layout),
    }
    output = json.loads(json.dumps(output))  # as a reader will see it
    context = output_context(output)
    with atomic_path(out_path) as tmp, tmp.open("wb") as fh:
        writer = ContainerWriter(fh, level=cfg.compression.zstd_level)
        if cfg.compression.embed_decoder:
            decoder_bytes = embed_decoder(writer, trained)
        bar = tqdm(
            total=source.num_entries,
            desc=f"compress {source.path.name}",
            unit="entry",
            disable=None,
            leave=False,
        )
        for i, chunk in enumerate(source.chunks()):
            varying = [] if mode.bounded else norm.varying_constants(chunk.values)
            for col in varying:
                if col not in lossless_cols:
                    log.warning(
                        "column '%s' was constant in training but varies in %s: stored losslessly",
                        col,
                        source.path.name,
                    )
                lossless_cols.add(col)
            if event_source == "":  # decided on the first chunk, recorded in the header
                event_source = events.source_of(
                    chunk.counts, chunk.passthrough, cfg.compression.event_column
                )
            chunk_ctx = modes.ChunkContext(
                events.event_starts(
                    event_source, chunk.counts, chunk.passthrough, len(chunk.values)
                ),
                events.row_integers(chunk.counts, chunk.passthrough, len(chunk.values)),
            )
            sections = mode.encode(chunk.values, chunk_ctx)
            for name, arr in sections.items():
                writer.add_array(name, i, arr, level=mode.section_level(name))
            kept = override_sections(chunk.values, norm.columns, overrides)
            for name, arr in kept.items():
                writer.add_array(name, i, arr)
            # what decompress will decode: the latent check and the content digest
            t_check = time.perf_counter()
            decoded = chunk_reconstruction(
                mode,
                sections,
                chunk_ctx,
                len(chunk.values),
                norm.columns,
                lossless_cols,
                verify=cfg.compression.verify,
            )
            decoded = apply_overrides(decoded, norm.columns, overrides, kept)
            if not mode.bounded:
                check.add(chunk.values, decoded)
            for col in sorted(lossless_cols):  # at the stored dtype: exact, and half as big
                writer.add_array(
                    f"lossless:{col}",
                    i,
                    chunk.values[:, norm.columns.index(col)].astype(column_dtypes[col]),
                )
            if chunk.counts is not None:
                writer.add_array(
                    "counts", i, chunk.counts.astype(np.int64), level=passthrough_level
                )
            passthrough = ipc_bytes(chunk.passthrough) if chunk.passthrough.num_columns else b""
            if passthrough:
                writer.add_bytes("passthrough", i, passthrough, level=passthrough_level)
            n = len(chunk.values)
            digest = decoded_digest(
                i,
                decoded,
                chunk.values,
                sorted(lossless_cols),
                norm.columns,
                chunk.counts,
                passthrough,
                context,
            )
            check_seconds += time.perf_counter() - t_check
            chunks_meta.append(
                {
                    "rows": n,
                    "entries": chunk.entries,
                    "lossless": sorted(lossless_cols),
                    DIGEST_KEY: digest,
                }
            )
            rows += n
            entries += chunk.entries
            bar.update(chunk.entries)
        bar.close()
        header = {
            "format": "baler_ext",
            "created_by": f"baler_ext {__version__}",
            "mode": mode.name,
            "mode_settings": mode.header(),
            "features": mode.features(),
            "model": {
                "hash": trained.hash,
                "name": trained.meta["arch"]["name"],
                "latent_dim": trained.meta["arch"]["latent_dim"],
            },
            **output,
            "decoder_embedded": bool(cfg.compression.embed_decoder),
            **compression_entries(cfg.compression),
            "rows": rows,
            "entries": entries,
            "chunks": chunks_meta,
            "events": event_source or None,
            # what the decoder needs besides the file (stored here or beside the model:
            # decoder weights and learned probability model), so that --mode info can show
            # the ratio with the decoder without loading torch
            "decoder_bytes": decoder_bytes or decoder_cost(trained, mode),
            "decode_platform": platform_fingerprint(device),
            "precision": {c: r.header_entry(c) for c, r in precision.items()},
            "exact_values": {c: v.tolist() for c, v in overrides.items()},
            "exact_in_mode": {c: v.tolist() for c, v in sentinels.items() if c not in overrides},
            "discrete_columns": discrete,
        }
        sizes = writer.close(header)
    check.report(source.path.name)
    result = CompressedFile(
        source.path,
        out_path,
        rows,
        entries,
        rows * len(norm.columns) * 8,
        sizes,
        time.perf_counter() - t0,
        check_seconds,
    )
    ratios = compute_ratios(group_sizes(sizes), result.raw_float64_bytes, header["decoder_bytes"])
    log.info(
        "%s -> %s: %d rows, %d bytes; vs raw float64 of the compressed columns: payload "
        "%.2fx, payload + decoder weights %.2fx, whole file (lossless columns included) "
        "%.2fx; the content digest%s took %.2f s of %.2f s",
        source.path.name,
        out_path.name,
        rows,
        result.total_bytes,
        ratios["payload_vs_float64"],
        ratios["payload_with_decoder_vs_float64"],
        ratios["file_vs_float64"],
        " and the verifying decode" if cfg.compression.verify else "",
        check_seconds,
        result.seconds,
    )
    return result


def chunk_reconstruction(
    mode: modes.CompressionMode,
    sections: dict[str, np.ndarray],
    context: modes.ChunkContext,
    n_rows: int,
    columns: list[str],
    lossless: set[str],
    *,
    verify: bool,
) -> np.ndarray:
    """The values the chunk just encoded decodes to (lossless columns not filled in).

    A bounded mode knows them from its encoder (:meth:`CompressionMode.reconstruction`),
    so the chunk is not decoded again; otherwise, or with ``verify``, it is decoded as
    decompress will, and with ``verify`` a decode that differs from the encoder's values
    in any bit raises :class:`~baler_ext.errors.ContainerError` before anything is written.
    """
    known = mode.reconstruction()
    if known is not None and not verify:
        return known
    decoded = mode.decode(sections, n_rows, context)
    if known is not None:
        idx = [i for i, c in enumerate(columns) if c not in lossless]
        a, b = known[:, idx], decoded[:, idx]
        same = (a.view(np.int64) == b.view(np.int64)) | (np.isnan(a) & np.isnan(b))
        if not same.all():
            bad = int((~same).any(axis=0).argmax())
            raise ContainerError(
                f"compression.verify: decoding the chunk again changed column "
                f"{columns[idx[bad]]!r} ({int((~same).sum())} values); "
                "nothing was written — report this with the file and the model"
            )
    return decoded


def decoded_digest(
    chunk: int,
    decoded: np.ndarray,
    values: np.ndarray,
    lossless: list[str],
    columns: list[str],
    counts: np.ndarray | None,
    passthrough: bytes,
    context: bytes,
) -> dict:
    """Digest a chunk decoded exactly as decompress will (sections decoded, exact values
    written back), with the lossless columns filled in.

    The chunk's header entry records it (:mod:`baler_ext.codec.digest`); decompress
    refuses a chunk that decodes to anything else.
    """
    idx = [columns.index(c) for c in lossless]
    decoded[:, idx] = values[:, idx]
    return chunk_digest(chunk, decoded, counts, passthrough, idx, context)


@dataclass
class ColumnPlan:
    """How compress treats each column (shared with the train stage's rate model)."""

    precision: dict[str, Resolved]
    mode_cfg: CompressionConfig
    lossless: set[str]
    sentinels: dict[str, np.ndarray]
    discrete: list[str]


def column_plan(
    cfg: Config,
    columns: list[str],
    column_dtypes: dict[str, str],
    model_lossless: list[str],
    found: dict,
) -> ColumnPlan:
    """Per-column bounds from the precision policy and glob patterns (made explicit for
    the mode), the columns stored losslessly (a conditional model's conditions, discrete
    floats found on the training data, full-precision bounds) and the sentinels to keep
    exact."""
    precision = resolve_precision(cfg.compression.policy, cfg.compression.bounds, columns)
    mode_cfg = dataclasses.replace(
        cfg.compression, bounds=explicit_bounds(precision), policy="none"
    )
    discrete = [c for c in found.get("discrete", {}) if c in columns]
    lossless = {c for c in model_lossless if c in columns}
    lossless.update(discrete)
    # a bound of full precision (NanoAOD's precision = -1) is lossless storage
    lossless.update(
        c for c in columns if is_lossless(precision[c].bound, column_dtypes.get(c, "float64"))
    )
    sentinels = {c: v for c, v in sentinel_arrays(found, columns).items() if c not in lossless}
    return ColumnPlan(precision, mode_cfg, lossless, sentinels, discrete)


def configure_mode(
    mode: modes.CompressionMode,
    column_dtypes: dict[str, str],
    lossless: set[str],
    sentinels: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """Configure ``mode``; return the sentinels the stage must keep exact itself.

    A bounded mode whose ``configure`` takes ``exact`` (values stored bit-exact) keeps
    them; for any other mode (latent mode accepts the keyword but has no way to honour it)
    the stage records their rows (:func:`baler_ext.exact.override_sections`) and
    decompress writes them back, so sentinels are exact in every mode.
    """
    if mode.bounded and "exact" in inspect.signature(mode.configure).parameters:
        bounded: Any = mode  # a mode whose configure takes ``exact`` (checked above)
        bounded.configure(column_dtypes, lossless, exact=sentinels)
        return {}
    mode.configure(column_dtypes, lossless)
    return sentinels


class LatentCheck:
    """Latent mode has no bound: measure its errors against the columns' bounds.

    The threshold is the bound each column received (``[compression] bounds`` / ``policy``,
    default ``rel = 1e-3``); :meth:`report` warns with the fraction of values beyond it and
    the largest error, and about any sentinel value the reconstruction changed.
    """

    def __init__(
        self, columns: list[str], precision: dict[str, Resolved], sentinels: dict[str, np.ndarray]
    ) -> None:
        self.columns = columns
        self.precision = precision
        self.sentinels = sentinels
        self.n = 0
        self.over = np.zeros(len(columns), dtype=np.int64)
        self.worst = np.zeros(len(columns))
        self.damaged: dict[str, int] = {}

    def add(self, values: np.ndarray, restored: np.ndarray) -> None:
        err = np.abs(restored - values)
        for j, c in enumerate(self.columns):
            ((kind, b),) = self.precision[c].bound.items()
            limit = b if kind == "abs" else b * np.abs(values[:, j])
            self.over[j] += int(np.count_nonzero(err[:, j] > limit))
            if len(err):
                self.worst[j] = max(self.worst[j], float(err[:, j].max()))
        for c, k in sentinel_damage(values, restored, self.columns, self.sentinels).items():
            self.damaged[c] = self.damaged.get(c, 0) + k
        self.n += len(values)

    def report(self, name: str) -> None:
        if not self.n:
            return
        bad = [
            (c, self.over[j] / self.n, self.worst[j])
            for j, c in enumerate(self.columns)
            if self.over[j]
        ]
        if bad:
            log.warning(
                "%s: latent mode has no error bound; beyond the columns' bounds: %s. Use "
                'compression.mode = "bounded" to keep every value within its bound',
                name,
                "; ".join(
                    f"{c} {f:.1%} of values (bound {self.precision[c].bound}, max error {w:.3g})"
                    for c, f, w in bad
                ),
            )
        for c, k in self.damaged.items():
            log.warning("%s: latent mode changed %d sentinel values of '%s'", name, k, c)


def decoder_cost(trained: TrainedModel, mode: modes.CompressionMode) -> int:
    """What decoding this file needs besides it, zstd-compressed: the autoencoder's decoder
    weights when a chunk uses the latent, the learned probability model when it coded the
    file (read from model.json; no torch needed)."""
    cost = 0
    if mode.needs_autoencoder():
        cost += weights_bytes(trained)
    if getattr(mode, "learned", None) is not None:
        cost += int(trained.meta.get("rate_model_bytes", 0))
    return cost


# --- the per-file task of compress, and the check behind --resume -------------------------
# Module-level functions with plain arguments (paths, the config dataclass, the model's
# folder and hash), so that dask pickles them by reference and every worker loads the model
# once from the (shared) project folder. The local executor runs the very same functions.


def compress_task(
    src_path: Path, cfg: Config, model_dir: Path, model_hash: str, out_path: Path
) -> CompressedFile:
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
            if not same_settings(h, cfg.compression):
                log.info("resume: %s has other compression settings; compressing again", path.name)
                return None
            reader.verify()
            sizes = reader.section_sizes()
    except ContainerError as exc:
        log.warning("resume: %s; compressing it again", exc)
        return None
    return CompressedFile(
        Path(h["layout"].get("file_name", path.stem)),
        path,
        h["rows"],
        h["entries"],
        h["rows"] * len(h["columns"]) * 8,
        sizes,
        0.0,
    )


def compress(project: Project, cfg: Config, resume: bool = False) -> list[CompressedFile]:
    """Compress every input file of the project with its trained model.

    One container per input, on ``cfg.execution.executor`` (``local`` or ``dask``; the
    containers are byte-identical either way). With ``resume``, an input whose container
    exists, verifies and was made by this model and mode is skipped.
    """
    groups = plan_groups(cfg, project)
    if groups is not None:
        return compress_groups(project, cfg, groups, resume)
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
        log.info(
            "resume: %d of %d files already compressed", len(results), len(results) + len(todo)
        )
    for i, res in zip(
        todo, run_tasks(compress_task, tasks, names, cfg.execution, "compress"), strict=True
    ):
        results[i] = res
    return [results[i] for i in sorted(results)]


# --- whole-file projects: one outer container of per-group inner containers ----------


@dataclass
class GroupModel:
    """What a worker needs to load one group's model: plan, config, folder and hash."""

    plan: GroupPlan
    cfg: Config
    model_dir: Path
    model_hash: str


def compress_groups_task(
    src_path: Path, cfg: Config, models: list[GroupModel], out_path: Path
) -> CompressedFile:
    """Compress one input of a whole-file project into ``out_path`` (atomically): each
    group into its inner container with its model (:func:`compress_source`), the inner
    containers into one outer container (``docs/FORMAT.md``, "Whole files")."""
    worker_threads(cfg)
    t0 = time.perf_counter()
    whole = whole_layout(src_path, cfg.data, [m.plan for m in models])
    entries: dict[str, list[int]] = {}
    groups: list[dict[str, Any]] = []
    rows = raw64 = 0
    digest_seconds = 0.0
    with (
        atomic_path(out_path) as final,
        tempfile.TemporaryDirectory(dir=final.parent, prefix=".groups-") as tmp,
        final.open("wb") as fh,
    ):
        writer = ContainerWriter(fh, level=cfg.compression.zstd_level)
        for i, m in enumerate(models):
            inner = Path(tmp) / f"{i}.baler"
            trained = worker_model(m.model_dir, m.model_hash)
            res = compress_source(Source(src_path, m.cfg.data), trained, m.cfg, inner)
            with ContainerReader(inner) as reader:
                entries[m.plan.name] = [c["entries"] for c in reader.header["chunks"]]
            # the inner container is compressed already: stored at zstd level 1
            writer.add_bytes(f"{GROUP_PREFIX}{m.plan.name}", -1, inner.read_bytes(), level=1)
            groups.append(
                {
                    "name": m.plan.name,
                    "section": f"{GROUP_PREFIX}{m.plan.name}",
                    "model_hash": m.model_hash,
                    "columns": m.plan.columns,
                    "branches": m.plan.branches,
                    "rows": res.rows,
                    "entries": res.entries,
                    "chunks": len(entries[m.plan.name]),
                    "bytes": res.total_bytes,
                }
            )
            rows += res.rows
            raw64 += res.raw_float64_bytes
            digest_seconds += res.digest_seconds
            inner.unlink()
        if len({tuple(e) for e in entries.values()}) != 1:
            raise InputDataError(
                f"{src_path}: its structure groups were read in different chunks "
                f"({entries}); compress the collections in separate projects"
            )
        columns = [c for m in models for c in m.plan.columns]
        header = {
            "format": "baler_ext",
            "created_by": f"baler_ext {__version__}",
            "mode": GROUPS_FEATURE,
            "features": [GROUPS_FEATURE],
            "model": {
                "hash": combined_hash([(m.plan.name, m.model_hash) for m in models]),
                "name": GROUPS_FEATURE,
                "latent_dim": 0,
            },
            "columns": columns,
            "column_dtypes": {c: whole.layout.branch(c).dtype for c in columns},
            "layout": whole.layout.to_dict(),
            "arrow_schema": schema_to_header(whole.arrow_schema, whole.layout),
            "decoder_embedded": False,
            **compression_entries(cfg.compression),
            "rows": rows,
            "entries": groups[0]["entries"],
            "chunks": [],
            "groups": groups,
        }
        header = json.loads(json.dumps(header))  # as a reader will see it
        header["output_digest"] = groups_digest(header)
        sizes = writer.close(header)
    result = CompressedFile(
        src_path,
        out_path,
        rows,
        header["entries"],
        raw64,
        sizes,
        time.perf_counter() - t0,
        digest_seconds,
    )
    log.info(
        "%s -> %s: %d groups (%s), %d entries, %d bytes (input %d bytes)",
        src_path.name,
        out_path.name,
        len(groups),
        ", ".join(g["name"] for g in groups),
        header["entries"],
        out_path.stat().st_size,
        src_path.stat().st_size,
    )
    return result


def completed_groups_container(path: Path, model_hash: str, cfg: Config) -> CompressedFile | None:
    """For ``--resume``: the summary of an existing, verified whole-file container made
    by these models and settings, or None."""
    if not path.is_file():
        return None
    try:
        with ContainerReader(path) as reader:
            h = reader.header
            if not is_grouped(h) or h["model"]["hash"] != model_hash:
                return None
            if not same_settings(h, cfg.compression):
                return None
            reader.verify()
            sizes = reader.section_sizes()
    except ContainerError as exc:
        log.warning("resume: %s; compressing it again", exc)
        return None
    return CompressedFile(
        Path(h["layout"].get("file_name", path.stem)),
        path,
        h["rows"],
        h["entries"],
        sum(g["rows"] * len(g["columns"]) * 8 for g in h["groups"]),
        sizes,
        0.0,
    )


def compress_groups(
    project: Project, cfg: Config, groups: list[tuple[GroupPlan, Config]], resume: bool
) -> list[CompressedFile]:
    """Compress every input of a whole-file project: one container per input file."""
    models = []
    for gplan, gcfg in groups:
        gproject = group_project(project, gplan.name)
        trained = load_project_model(gproject)
        if trained.normaliser.columns != gplan.columns:
            raise InputDataError(
                f"group {gplan.name}: columns {gplan.columns} differ from its model's "
                f"{trained.normaliser.columns}; retrain with --mode train"
            )
        models.append(GroupModel(gplan, gcfg, gproject.dir("model"), trained.hash))
    model_hash = combined_hash([(m.plan.name, m.model_hash) for m in models])
    out_dir = project.dir("compressed")
    results: dict[int, CompressedFile] = {}
    tasks, names, todo = [], [], []
    for i, src in enumerate(resolve_inputs(cfg)):
        out_path = out_dir / f"{src.stem}{CONTAINER_SUFFIX}"
        done = completed_groups_container(out_path, model_hash, cfg) if resume else None
        if done is not None:
            log.info("resume: skipping %s (%s exists and verifies)", src.name, out_path.name)
            results[i] = done
            continue
        tasks.append((src, cfg, models, out_path))
        names.append(src.name)
        todo.append(i)
    for i, res in zip(
        todo, run_tasks(compress_groups_task, tasks, names, cfg.execution, "compress"), strict=True
    ):
        results[i] = res
    return [results[i] for i in sorted(results)]
