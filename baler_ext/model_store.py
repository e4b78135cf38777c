"""Saving and loading trained models without pickle.

``output/model/`` holds ``weights.pt`` (a state dict of plain tensors, loaded
with ``torch.load(weights_only=True)``), ``model.json`` (architecture, columns,
identity hash), ``normaliser.json`` and, when the train stage trained one, the learned
probability model as ``rate_model.npz`` (integer arrays, loaded with
``allow_pickle=False``) and ``rate_model.json``. The hash covers all of them.

Loading is lazy: :func:`load_model` reads the JSON files and the learned model (numpy
only) and loads the autoencoder's weights — and torch — only when ``.model`` is first
used, so the classical and learned bounded paths run without importing torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from baler_ext import __version__
from baler_ext.codec.container import DECODER_PREFIX, ContainerReader, ContainerWriter
from baler_ext.codec.probability.learned import LearnedModel
from baler_ext.config import ModelConfig, build_section
from baler_ext.errors import BalerError, ContainerError, ModelError
from baler_ext.normalise import Normaliser
from baler_ext.project import Project, atomic_path, require_stage_output

if TYPE_CHECKING:
    import torch

    from baler_ext.models.base import Autoencoder

log = logging.getLogger(__name__)

WEIGHTS = "weights.pt"
MODEL_JSON = "model.json"
NORMALISER_JSON = "normaliser.json"
RATE_NPZ = "rate_model.npz"
RATE_JSON = "rate_model.json"
#: earlier models of a project, by hash, kept so that their files stay decompressible
ARCHIVE = "archive"


def model_hash(
    state_dict: dict[str, torch.Tensor],
    arch: dict[str, Any],
    normaliser: Normaliser,
    learned: LearnedModel | None = None,
) -> str:
    """SHA-256 identity of a trained model: weights, architecture, normaliser and the
    learned probability model."""
    h = hashlib.sha256()
    h.update(json.dumps(arch, sort_keys=True).encode())
    h.update(json.dumps(normaliser.to_dict(), sort_keys=True).encode())
    for key in sorted(state_dict):
        h.update(key.encode())
        h.update(np.ascontiguousarray(state_dict[key].detach().cpu().numpy()).tobytes())
    if learned is not None:
        h.update(json.dumps(learned.meta(), sort_keys=True, default=float).encode())
        arrays = learned.to_arrays()
        for key in sorted(arrays):
            h.update(key.encode())
            h.update(np.ascontiguousarray(arrays[key], "<i8").tobytes())
    return h.hexdigest()


class TrainedModel:
    """A model with its normaliser, metadata and learned probability model.

    ``model`` is either given or loaded (with torch) on first access by ``loader``.
    """

    def __init__(
        self,
        model: Autoencoder | None,
        normaliser: Normaliser,
        meta: dict[str, Any],
        learned: LearnedModel | None = None,
        loader: Callable[[], Autoencoder] | None = None,
    ) -> None:
        self._model = model
        self._loader = loader
        self.normaliser = normaliser
        self.meta = meta
        self.learned = learned

    @property
    def model(self) -> Autoencoder:
        if self._model is None:
            if self._loader is None:
                raise ContainerError("no autoencoder weights were saved with this model")
            self._model = self._loader()
        return self._model

    @property
    def hash(self) -> str:
        return self.meta["hash"]

    @property
    def lossless_columns(self) -> list[str]:
        """Columns the model needs verbatim (the cvae's conditions), from model.json."""
        if "lossless_columns" in self.meta:
            return list(self.meta["lossless_columns"])
        return list(self.model.lossless_columns)


def save_model(
    directory: Path,
    model: Autoencoder,
    model_cfg: ModelConfig,
    normaliser: Normaliser,
    extra: dict[str, Any] | None = None,
    learned: LearnedModel | None = None,
) -> str:
    """Write weights, ``model.json``, ``normaliser.json`` and the learned probability
    model (when given); return the model hash."""
    import torch

    from baler_ext.models.base import latent_size

    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    arch = {
        "name": model_cfg.name,
        "n_features": model.n_features,
        "latent_dim": model.latent_dim,
        "hidden": list(model_cfg.hidden),
        "activation": model_cfg.activation,
        "options": model_cfg.options,
        "dtype": model_cfg.dtype,
        "built_latent_dim": latent_size(model_cfg, model.n_features),
    }
    digest = model_hash(state, arch, normaliser, learned)
    meta = {"arch": arch, "hash": digest, "baler_ext_version": __version__, **(extra or {})}
    archive_model(directory, keep_if=digest)
    with atomic_path(directory / WEIGHTS) as tmp:
        torch.save(state, tmp)
    with atomic_path(directory / NORMALISER_JSON) as tmp:
        normaliser.save(tmp)
    for name in (RATE_NPZ, RATE_JSON):
        (directory / name).unlink(missing_ok=True)
    if learned is not None:
        with atomic_path(directory / RATE_NPZ) as tmp, tmp.open("wb") as fh:
            arrays: dict[str, Any] = learned.to_arrays()
            np.savez(fh, **arrays)
        with atomic_path(directory / RATE_JSON) as tmp:
            tmp.write_text(json.dumps(learned.meta(), indent=1, default=float))
    with atomic_path(directory / MODEL_JSON) as tmp:
        tmp.write_text(json.dumps(meta, indent=1))
    return digest


def archive_model(directory: Path, keep_if: str = "") -> Path | None:
    """Copy the model in ``directory`` to ``directory/archive/<hash>/`` before it is replaced.

    Files compressed with an earlier model stay decompressible after retraining
    (:func:`model_dir_for` finds the archived copy by hash). Nothing is archived when
    there is no model yet or its hash is ``keep_if`` (the same model again).
    """
    if not (directory / MODEL_JSON).is_file():
        return None
    old_hash = read_meta(directory)["hash"]
    target = directory / ARCHIVE / old_hash
    if old_hash == keep_if or (target / MODEL_JSON).is_file():
        return None
    target.mkdir(parents=True, exist_ok=True)
    for name in (WEIGHTS, NORMALISER_JSON, RATE_NPZ, RATE_JSON, MODEL_JSON):
        if (directory / name).is_file():  # model.json last: marks complete
            shutil.copy2(directory / name, target / name)
    log.info("previous model %s archived in %s", old_hash[:12], target)
    return target


def model_dir_for(directory: Path, model_hash: str) -> Path:
    """The folder holding the model ``model_hash``: ``directory`` or its archive.

    Raises
    ------
    ContainerError
        When neither the project's model nor an archived one has that hash.
    """
    if (directory / MODEL_JSON).is_file():
        if read_meta(directory)["hash"] == model_hash:
            return directory
    archived = directory / ARCHIVE / model_hash
    if (archived / MODEL_JSON).is_file():
        return archived
    raise ContainerError(
        f"compressed with model {model_hash[:12]}, which is neither this project's model nor "
        f"archived in {directory / ARCHIVE}; decompress it with the project that compressed it"
    )


def load_learned(directory: Path) -> LearnedModel | None:
    """The learned probability model saved beside the weights, or None."""
    if not (directory / RATE_JSON).is_file():
        return None
    try:
        meta = json.loads((directory / RATE_JSON).read_text())
        with np.load(directory / RATE_NPZ, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise ContainerError(
            f"{directory / RATE_NPZ}: unreadable learned probability model "
            f"({exc}); retrain with --mode train"
        ) from None
    return LearnedModel.from_parts(meta, arrays)


def _unreadable(directory: Path, exc: BaseException) -> ModelError:
    text = (str(exc).strip().splitlines() or [""])[0][:200]
    return ModelError(
        f"{directory}: the trained model cannot be read ({type(exc).__name__}"
        f"{': ' + text if text else ''}); retrain it with --mode train"
    )


def read_meta(directory: Path) -> dict[str, Any]:
    """``model.json`` of the model in ``directory``.

    Raises
    ------
    ModelError
        When it is not JSON or lacks the model hash.
    """
    try:
        meta = json.loads((directory / MODEL_JSON).read_text())
        if not isinstance(meta, dict) or not isinstance(meta.get("hash"), str):
            raise ValueError(f"{MODEL_JSON} has no model hash")
    except (ValueError, UnicodeDecodeError) as exc:
        raise _unreadable(directory, exc) from None
    return meta


def load_model(directory: Path) -> TrainedModel:
    """Load a model saved by :func:`save_model` (no pickle: ``weights_only=True``).

    Raises
    ------
    ModelError
        When a model file is missing, damaged, or not what ``model.json`` describes
        (e.g. a pickle payload as ``weights.pt``: ``weights_only`` refuses it unexecuted).
    """
    with model_errors(directory):
        return _load_model(directory)


@contextmanager
def model_errors(directory: Path) -> Iterator[None]:
    """Map a failure to read or rebuild the model in ``directory`` to a ModelError (project
    errors and Ctrl-C pass; filesystem errors pass to the CLI, which names the path)."""
    try:
        yield
    except (BalerError, KeyboardInterrupt):
        raise
    except FileNotFoundError as exc:
        raise ModelError(
            f"{exc.filename or directory}: missing from the trained model; "
            "retrain it with --mode train"
        ) from None
    except OSError:  # permissions, I/O: reported with the path at the CLI boundary
        raise
    except Exception as exc:  # a pickle payload, a damaged or mismatched file
        raise _unreadable(directory, exc) from None


def _load_model(directory: Path) -> TrainedModel:
    meta = read_meta(directory)
    arch = meta["arch"]
    cfg = build_section(
        ModelConfig,
        {k: arch[k] for k in ("name", "hidden", "activation", "options", "dtype")},
        str(directory / MODEL_JSON),
        "model",
    )
    # built_latent_dim: the configured size, which differs from latent_dim for models whose
    # latent carries extra entries (the cvae's conditions)
    cfg.latent_dim = arch.get("built_latent_dim", arch["latent_dim"])
    normaliser = Normaliser.load(directory / NORMALISER_JSON)

    def loader() -> Autoencoder:
        import torch

        from baler_ext.models.base import build_model

        with model_errors(directory):  # the weights are read only now
            model = build_model(cfg, arch["n_features"], columns=normaliser.active)
            state = torch.load(directory / WEIGHTS, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        model.eval()
        return model

    return TrainedModel(None, normaliser, meta, load_learned(directory), loader)


def load_project_model(project: Project) -> TrainedModel:
    """The project's trained model, or the command to run first."""
    model_dir = project.dir("model")
    require_stage_output(model_dir / "model.json", "train", project.name, "trained model")
    return load_model(model_dir)


def decoder_state(trained: TrainedModel) -> dict[str, np.ndarray]:
    """The decoder's tensors: every state-dict entry not under ``encoder``."""
    return {
        k: v.detach().cpu().numpy()
        for k, v in trained.model.state_dict().items()
        if not k.startswith("encoder")
    }


def weights_bytes(trained: TrainedModel) -> int:
    """zstd-compressed size of what a decoder needs besides the file: the decoder weights
    and the learned probability model (recorded in model.json at train time)."""
    if "decoder_bytes" in trained.meta:
        return int(trained.meta["decoder_bytes"])
    import zstandard

    cctx = zstandard.ZstdCompressor(level=19)
    return sum(
        len(cctx.compress(np.ascontiguousarray(a).tobytes()))
        for a in decoder_state(trained).values()
    )


def embed_decoder(writer: ContainerWriter, trained: TrainedModel) -> int:
    """Store the decoder weights as ``decoder/<key>`` sections (chunk -1); return bytes."""
    return sum(
        writer.add_array(f"{DECODER_PREFIX}{k}", -1, a).length
        for k, a in decoder_state(trained).items()
    )


def check_embedded_decoder(reader: ContainerReader, trained: TrainedModel) -> None:
    """Verify the embedded ``decoder/<tensor>`` sections and that they are ``trained``'s.

    Raises
    ------
    ContainerError
        When a section fails its checks or differs from the model that decodes the file.
    """
    state = decoder_state(trained)
    names = {
        s.name[len(DECODER_PREFIX) :] for s in reader.sections if s.name.startswith(DECODER_PREFIX)
    }
    if names != set(state):
        raise ContainerError(
            f"{reader.path}: the embedded decoder has other tensors than "
            "the model's; the file is damaged"
        )
    for key, want in state.items():
        got = reader.read_array(f"{DECODER_PREFIX}{key}", -1)
        if (
            got.shape != want.shape
            or got.dtype != want.dtype.newbyteorder("<")
            or not np.array_equal(got, want)
        ):
            raise ContainerError(
                f"{reader.path}: the embedded decoder tensor '{key}' differs "
                "from the model's; the file is damaged"
            )
