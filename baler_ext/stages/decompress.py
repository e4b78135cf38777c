"""``--mode decompress``: each ``.baler`` file -> the input's format and layout."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from baler_ext.codec import events, modes
from baler_ext.codec.container import DIGEST_KEY, ContainerReader, decode_errors
from baler_ext.codec.digest import check_digest, output_context, same_platform
from baler_ext.config import Config
from baler_ext.errors import BalerError, ContainerError, ProjectError
from baler_ext.exact import apply_overrides, sentinel_arrays
from baler_ext.executors import run_tasks, worker_model, worker_threads
from baler_ext.io.formats import awkward_columns, get_format
from baler_ext.io.layout import SourceLayout
from baler_ext.io.parquet import schema_from_header
from baler_ext.io.source import OutputWriter, resolve_inputs
from baler_ext.model_store import MODEL_JSON, TrainedModel, check_embedded_decoder, model_dir_for
from baler_ext.project import CONTAINER_SUFFIX, Project, atomic_path, require_stage_output
from baler_ext.stages.groups import group_project, inner_containers, is_grouped

log = logging.getLogger(__name__)


def _read_ipc(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


def output_path(project: Project, cfg: Config, layout: SourceLayout, container: Path) -> Path:
    fmt = layout.format if cfg.output.format == "same" else cfg.output.format
    folder = project.dir("decompressed")
    if cfg.output.directory is not None:
        folder = Path(cfg.output.directory).expanduser()
        folder = folder if folder.is_absolute() else cfg.base_dir / folder
    out = folder / f"{container.stem}{get_format(fmt).suffix}"
    try:
        inputs = {p.resolve() for p in resolve_inputs(cfg)}
    except BalerError:  # inputs need not exist where one decompresses
        inputs = set()
    if out.resolve() in inputs:
        raise ProjectError(f"{out} is an input file; set output.directory to another folder")
    return out


def decompress_file(container: Path, trained: TrainedModel, cfg: Config, out_path: Path) -> Path:
    """Restore one container into ``out_path`` (written atomically).

    Every failure while decoding the container is a :class:`ContainerError` naming it;
    each chunk is checked against the content digest recorded at compress time.
    """
    with ContainerReader(container) as reader:
        header = reader.header
        if header["model"]["hash"] != trained.hash:
            raise ContainerError(
                f"{container}: compressed with model {header['model']['hash'][:12]}, but this "
                f"project's model is {trained.hash[:12]}; decompress it with the project and "
                "model that compressed it"
            )
        with decode_errors(container):
            layout = SourceLayout.from_dict(header["layout"])
            schema = schema_from_header(header.get("arrow_schema"), layout)
            mode, sentinels = open_mode(container, reader, trained, cfg)
        # the writer follows the file's layout: its failures are the file's too (OSError,
        # e.g. a full disk, passes unchanged)
        with atomic_path(out_path) as tmp, decode_errors(container):
            writer = OutputWriter(
                tmp, layout, cfg.output.format, cfg.output.tree, schema, len(header["chunks"])
            )
            bar = tqdm(
                total=header["entries"],
                desc=f"decompress {container.name}",
                unit="entry",
                disable=None,
                leave=False,
            )
            drifted = 0
            strict = same_platform(header.get("decode_platform"), mode.device)
            for i, meta in enumerate(header["chunks"]):
                values, passthrough, counts, same = decode_chunk(reader, mode, i, strict, sentinels)
                drifted += not same
                writer.write(values, passthrough, counts)
                bar.update(meta["entries"])
            bar.close()
            writer.close()
    if drifted:
        log.info(
            "%s: %d of %d chunks decoded within cross-platform drift of the values "
            "recorded at compress time (not bit-identical: another device or BLAS)",
            container.name,
            drifted,
            len(header["chunks"]),
        )
    log.info("%s -> %s", container.name, out_path)
    return out_path


def open_mode(
    container: Path, reader: ContainerReader, trained: TrainedModel, cfg: Config
) -> tuple[modes.CompressionMode, dict[str, np.ndarray]]:
    """The compression mode that decodes the (single-group) container open in ``reader``,
    and the sentinels the stage kept exact; checks an embedded decoder."""
    header = reader.header
    device = cfg.training.device  # resolved only if a model runs
    if header.get("mode") not in modes.MODE_REGISTRY:
        raise ContainerError(
            f"{container}: unknown compression mode {header.get('mode')!r}; upgrade baler_ext"
        )
    mode = modes.get_mode(header["mode"])(trained, cfg.compression, device)
    mode.load_header(header.get("mode_settings", {}))
    sentinels = sentinel_arrays({"sentinels": header.get("exact_values", {})}, header["columns"])
    if header.get("decoder_embedded"):
        check_embedded_decoder(reader, trained)
    return mode, sentinels


def decompress_groups_file(
    container: Path, models: dict[str, TrainedModel], cfg: Config, out_path: Path
) -> Path:
    """Restore one whole-file container into ``out_path`` (written atomically): every
    group's inner container decoded chunk by chunk and checked against its digests, the
    groups' branches written together in the whole file's layout."""
    with ContainerReader(container) as outer, decode_errors(container):
        header = outer.header
        layout = SourceLayout.from_dict(header["layout"])
        schema = schema_from_header(header.get("arrow_schema"), layout)
        expected = [b.name for b in layout.branches]
        if sorted(b for g in header["groups"] for b in g["branches"]) != sorted(expected):
            raise ContainerError(
                f"{container}: its groups do not carry the branches of its layout; the file "
                "is damaged, recreate it with --mode compress"
            )
        with (
            atomic_path(out_path) as tmp,
            inner_containers(outer, tmp.parent) as inner,
        ):
            decoders = []
            for g, reader in inner:
                trained = models[g["name"]]
                if reader.header["model"]["hash"] != trained.hash:
                    raise ContainerError(
                        f"{container}: group '{g['name']}' was compressed with model "
                        f"{reader.header['model']['hash'][:12]}, but this project's model of "
                        f"that group is {trained.hash[:12]}; decompress it with the project "
                        "and models that compressed it"
                    )
                mode, sentinels = open_mode(container, reader, trained, cfg)
                strict = same_platform(reader.header.get("decode_platform"), mode.device)
                group_layout = SourceLayout.from_dict(reader.header["layout"])
                decoders.append((reader, mode, sentinels, strict, group_layout))
            n_chunks = len(inner[0][1].header["chunks"])
            writer = OutputWriter(tmp, layout, cfg.output.format, cfg.output.tree, schema, n_chunks)
            drifted = 0
            for i in tqdm(
                range(n_chunks), desc=f"decompress {container.name}", disable=None, leave=False
            ):
                columns: dict = {}
                for reader, mode, sentinels, strict, group_layout in decoders:
                    values, passthrough, counts, same = decode_chunk(
                        reader, mode, i, strict, sentinels
                    )
                    drifted += not same
                    columns.update(awkward_columns(group_layout, values, passthrough, counts))
                if sorted(columns) != sorted(expected):
                    raise ContainerError(
                        f"{container}: chunk {i} of its groups does not restore the branches "
                        "of its layout; the file is damaged, recreate it with --mode compress"
                    )
                writer.write_columns(columns)
            writer.close()
    if drifted:
        log.info(
            "%s: %d group chunks decoded within cross-platform drift of the values recorded "
            "at compress time (not bit-identical: another device or BLAS)",
            container.name,
            drifted,
        )
    log.info("%s -> %s (%d groups)", container.name, out_path, len(header["groups"]))
    return out_path


def decompress_groups_task(
    container: Path, cfg: Config, models: list[tuple[str, Path, str]], out_path: Path
) -> Path:
    """Restore one whole-file container with its groups' models ((name, folder, hash))."""
    worker_threads(cfg)
    trained = {name: worker_model(folder, h) for name, folder, h in models}
    return decompress_groups_file(container, trained, cfg, out_path)


def decode_chunk(
    reader: ContainerReader,
    mode: modes.CompressionMode,
    i: int,
    strict: bool = True,
    sentinels: dict[str, np.ndarray] | None = None,
) -> tuple[np.ndarray, pa.Table, np.ndarray | None, bool]:
    """Decode chunk ``i`` and check it against its recorded content digest.

    ``strict``: this is the platform that compressed the file (its header's
    ``decode_platform``), so the values must be bit-identical.

    Returns the float64 matrix, the passthrough table, the counts (or None) and whether
    the values are bit-identical to those digested at compress time (False: equal
    within cross-platform drift). Raises ContainerError when they differ.
    """
    header = reader.header
    meta = header["chunks"][i]
    columns = header["columns"]
    sections = reader.chunk_arrays(i)
    counts = sections.get("counts")
    raw_passthrough = reader.read_bytes("passthrough", i) if reader.has("passthrough", i) else b""
    passthrough = _read_ipc(raw_passthrough) if raw_passthrough else pa.table({})
    context = modes.ChunkContext(
        events.event_starts(header.get("events"), counts, passthrough, meta["rows"]),
        events.row_integers(counts, passthrough, meta["rows"]),
    )
    values = mode.decode(sections, meta["rows"], context)
    if sentinels:  # values the stage kept exact (modes without their own exact values)
        values = apply_overrides(values, columns, sentinels, sections)
    if values.shape != (meta["rows"], len(columns)):
        raise ContainerError(
            f"{reader.path}: chunk {i} decodes to shape {values.shape}, not "
            f"{(meta['rows'], len(columns))}; the file is damaged"
        )
    lossless = [columns.index(col) for col in meta["lossless"]]
    for col, j in zip(meta["lossless"], lossless, strict=True):
        values[:, j] = sections[f"lossless:{col}"]
    if counts is not None and (counts.min(initial=0) < 0 or counts.sum() != meta["rows"]):
        raise ContainerError(
            f"{reader.path}: the object counts of chunk {i} do not add up to "
            "its rows; the file is damaged"
        )
    exact = True
    if DIGEST_KEY in meta:
        try:
            exact = check_digest(
                meta[DIGEST_KEY],
                i,
                values,
                counts,
                raw_passthrough,
                lossless,
                strict,
                output_context(header),
            )
        except ValueError as exc:
            raise ContainerError(
                f"{reader.path}: chunk {i}: {exc}; the file is damaged or "
                "was altered, recreate it with --mode compress"
            ) from None
    return values, passthrough, counts, exact


def decompress_task(
    container: Path, cfg: Config, model_dir: Path, model_hash: str, out_path: Path
) -> Path:
    """Restore one container into ``out_path`` (atomically) with the project's model."""
    worker_threads(cfg)
    trained = worker_model(model_dir, model_hash)
    return decompress_file(container, trained, cfg, out_path)


def decompress(project: Project, cfg: Config, resume: bool = False) -> list[Path]:
    """Decompress every container of the project on ``cfg.execution.executor``.

    With ``resume``, a container whose output exists and is newer than it is skipped.
    """
    containers = sorted(project.dir("compressed").glob(f"*{CONTAINER_SUFFIX}"))
    if not containers:
        raise ProjectError(
            f"no compressed files in {project.dir('compressed')}; run "
            f"'baler_ext --project {project.name} --mode compress' first"
        )
    outs: list[Path] = []
    tasks = []
    grouped_tasks = []
    for c in containers:
        with ContainerReader(c) as reader, decode_errors(c):
            layout = SourceLayout.from_dict(reader.header["layout"])
            model_hash = reader.header["model"]["hash"]
            groups = reader.header["groups"] if is_grouped(reader.header) else None
        if groups is not None:
            out = output_path(project, cfg, layout, c)
            outs.append(out)
            if resume and out.is_file() and out.stat().st_mtime_ns >= c.stat().st_mtime_ns:
                log.info("resume: skipping %s (%s exists)", c.name, out.name)
                continue
            grouped_tasks.append((c, cfg, group_models(project, c, groups), out))
            continue
        try:  # the current model, or the archived one that compressed this file
            model_dir = model_dir_for(project.dir("model"), model_hash)
        except ContainerError as exc:
            raise ContainerError(f"{c}: {exc}") from None
        out = output_path(project, cfg, layout, c)
        outs.append(out)
        # outputs are renamed into place only when complete: one newer than its container
        # is a finished earlier run
        if resume and out.is_file() and out.stat().st_mtime_ns >= c.stat().st_mtime_ns:
            log.info("resume: skipping %s (%s exists)", c.name, out.name)
            continue
        tasks.append((c, cfg, model_dir, model_hash, out))
    if tasks:
        require_stage_output(
            project.dir("model") / MODEL_JSON, "train", project.name, "trained model"
        )
    run_tasks(decompress_task, tasks, [t[0].name for t in tasks], cfg.execution, "decompress")
    run_tasks(
        decompress_groups_task,
        grouped_tasks,
        [t[0].name for t in grouped_tasks],
        cfg.execution,
        "decompress",
    )
    return outs


def group_models(
    project: Project, container: Path, groups: list[dict]
) -> list[tuple[str, Path, str]]:
    """(name, model folder, model hash) of each group of a whole-file container: the
    group's current model or the archived one that compressed it."""
    out = []
    for g in groups:
        folder = group_project(project, g["name"]).dir("model")
        require_stage_output(
            folder / MODEL_JSON, "train", project.name, f"the model of group {g['name']}"
        )
        try:
            out.append((g["name"], model_dir_for(folder, g["model_hash"]), g["model_hash"]))
        except ContainerError as exc:
            raise ContainerError(f"{container}: group {g['name']}: {exc}") from None
    return out
