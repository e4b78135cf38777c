"""``--mode decompress``: each ``.baler`` file -> the input's format and layout."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from baler_ext.codec import events, modes
from baler_ext.codec.container import DIGEST_KEY, ContainerReader, decode_errors
from baler_ext.codec.digest import check_digest, output_context, platform_fingerprint
from baler_ext.config import Config
from baler_ext.errors import BalerError, ContainerError, ProjectError
from baler_ext.exact import apply_overrides, sentinel_arrays
from baler_ext.executors import run_tasks, worker_model, worker_threads
from baler_ext.io.formats import get_format
from baler_ext.io.layout import SourceLayout
from baler_ext.io.source import OutputWriter, resolve_inputs
from baler_ext.model_store import MODEL_JSON, TrainedModel, check_embedded_decoder, model_dir_for
from baler_ext.project import CONTAINER_SUFFIX, Project, atomic_path, require_stage_output

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
            schema = None
            if header.get("arrow_schema"):
                schema = pa.ipc.read_schema(
                    pa.py_buffer(base64.b64decode(header["arrow_schema"], validate=True))
                )
            device = cfg.training.device  # resolved only if a model runs
            if header.get("mode") not in modes.MODE_REGISTRY:
                raise ContainerError(
                    f"{container}: unknown compression mode "
                    f"{header.get('mode')!r}; upgrade baler_ext"
                )
            mode = modes.get_mode(header["mode"])(trained, cfg.compression, device)
            mode.load_header(header.get("mode_settings", {}))
            sentinels = sentinel_arrays(
                {"sentinels": header.get("exact_values", {})}, header["columns"]
            )
            if header.get("decoder_embedded"):
                check_embedded_decoder(reader, trained)
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
            strict = header.get("decode_platform") == platform_fingerprint(mode.device)
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
    require_stage_output(project.dir("model") / MODEL_JSON, "train", project.name, "trained model")
    outs: list[Path] = []
    tasks = []
    for c in containers:
        with ContainerReader(c) as reader, decode_errors(c):
            layout = SourceLayout.from_dict(reader.header["layout"])
            model_hash = reader.header["model"]["hash"]
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
    run_tasks(decompress_task, tasks, [t[0].name for t in tasks], cfg.execution, "decompress")
    return outs
