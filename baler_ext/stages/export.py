"""``--mode export``: the trained encoder and decoder as TorchScript, normalisation folded in.

``output/export/`` receives::

    encoder.pt    x (n, n_columns) float64, raw units  ->  latent (n, latent_dim) float64
    decoder.pt    latent (n, latent_dim) float64        ->  x_hat (n, n_columns) float64, raw units
    export.json   column order, latent size, model hash and how the files were made

Both are traced (``torch.jit.trace``) wrappers around the model: the encoder selects the
columns the network sees, applies ``(x - shift) / scale`` and runs ``model.encode``; the
decoder runs ``model.decode``, applies ``x * scale + shift`` and puts back the columns that
were constant in training. They reproduce the float latent the codec computes before
quantisation and the decoder's reconstruction (``tests/stages/test_export.py``); the exact
residual coding of ``compression.mode = "bounded"`` is not part of them. Load them with
``torch.jit.load`` anywhere, without baler_ext, e.g. in a coffea processor through
``coffea.ml_tools.torch_wrapper`` (``docs/distributed.md``).
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from baler_ext.config import Config
from baler_ext.errors import ExportError
from baler_ext.model_store import TrainedModel, load_project_model
from baler_ext.models.base import Autoencoder
from baler_ext.normalise import Normaliser
from baler_ext.project import Project, atomic_path
from baler_ext.stages.group_plan import refuse_whole_file

log = logging.getLogger(__name__)

ENCODER_FILE = "encoder.pt"
DECODER_FILE = "decoder.pt"
EXPORT_JSON = "export.json"


class NormalisedEncoder(nn.Module):
    """Raw float64 columns -> float64 latent: column selection, normalisation, encoder."""

    model: Autoencoder
    index: torch.Tensor
    shift: torch.Tensor
    scale: torch.Tensor

    def __init__(self, model: Autoencoder, normaliser: Normaliser) -> None:
        super().__init__()
        self.model = model
        self.dtype = next(model.parameters()).dtype
        self.register_buffer("index", torch.as_tensor(normaliser.active_index, dtype=torch.long))
        self.register_buffer("shift", torch.tensor(normaliser.shift, dtype=torch.float64))
        self.register_buffer("scale", torch.tensor(normaliser.scale, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x.to(torch.float64).index_select(1, self.index) - self.shift) / self.scale
        return self.model.encode(z.to(self.dtype)).to(torch.float64)


class NormalisedDecoder(nn.Module):
    """float64 latent -> raw float64 columns: decoder, inverse normalisation, constants."""

    model: Autoencoder
    index: torch.Tensor
    shift: torch.Tensor
    scale: torch.Tensor
    constants: torch.Tensor

    def __init__(self, model: Autoencoder, normaliser: Normaliser) -> None:
        super().__init__()
        self.model = model
        self.dtype = next(model.parameters()).dtype
        self.n_columns = len(normaliser.columns)
        const = np.zeros(self.n_columns)
        for i, c in enumerate(normaliser.columns):
            const[i] = normaliser.constants.get(c, 0.0)
        self.register_buffer("index", torch.as_tensor(normaliser.active_index, dtype=torch.long))
        self.register_buffer("shift", torch.tensor(normaliser.shift, dtype=torch.float64))
        self.register_buffer("scale", torch.tensor(normaliser.scale, dtype=torch.float64))
        self.register_buffer("constants", torch.as_tensor(const, dtype=torch.float64))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.model.decode(z.to(self.dtype)).to(torch.float64) * self.scale + self.shift
        out = torch.zeros(x.shape[0], self.n_columns, dtype=torch.float64, device=x.device)
        # active columns get x (+0), constant columns 0 + their value: both exact
        return out.index_copy(1, self.index, x) + self.constants


@dataclass
class ExportResult:
    """Where :func:`export` wrote the TorchScript files."""

    encoder: Path
    decoder: Path
    meta: Path


def _trace(
    module: nn.Module, example: torch.Tensor, what: str, name: str
) -> torch.jit.ScriptModule:
    """Trace ``module`` on ``example``; check it on another batch size against eager mode."""
    module = module.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            traced = torch.jit.trace(module, example, check_trace=True)
    except Exception as exc:  # tracing errors are of many types
        raise ExportError(
            f"model '{name}': the {what} cannot be traced to TorchScript "
            f"({type(exc).__name__}: {str(exc).splitlines()[0]})"
        ) from None
    other = torch.cat([example, example[:1]])  # a batch size the trace did not see
    try:
        with torch.no_grad():
            ok = torch.equal(traced(other), module(other))
    except Exception:  # a shape baked into the graph fails here
        ok = False
    if not ok:
        raise ExportError(
            f"model '{name}': the traced {what} only works for the batch size it was traced "
            "with (the model takes len() of a tensor, which tracing freezes); export does not "
            "support this model yet"
        )
    return traced


def export_model(
    trained: TrainedModel, out_dir: Path, sample: np.ndarray | None = None
) -> ExportResult:
    """Trace and save the encoder and decoder of ``trained`` into ``out_dir``.

    ``sample`` (raw rows of all compressed columns) is the tracing input; by default
    the normaliser's shift replicated (any finite rows do: the graphs have no
    data-dependent branches for the models of the zoo).
    """
    model = trained.model.cpu().eval()
    norm = trained.normaliser
    name = trained.meta["arch"]["name"]
    if sample is None:
        sample = np.tile(norm.inverse(np.zeros((1, len(norm.active)))), (4, 1))
    x = torch.as_tensor(np.asarray(sample, dtype=np.float64))
    encoder = _trace(NormalisedEncoder(model, norm), x, "encoder", name)
    with torch.no_grad():
        z = encoder(x)
    decoder = _trace(NormalisedDecoder(model, norm), z, "decoder", name)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = ExportResult(out_dir / ENCODER_FILE, out_dir / DECODER_FILE, out_dir / EXPORT_JSON)
    for module, path in ((encoder, paths.encoder), (decoder, paths.decoder)):
        with atomic_path(path) as tmp:
            torch.jit.save(module, str(tmp))
    meta = {
        "model_hash": trained.hash,
        "model": name,
        "columns": norm.columns,
        "latent_dim": int(z.shape[1]),
        "input_dtype": "float64",
        "torch": torch.__version__,
        "encoder": {
            "file": ENCODER_FILE,
            "input": "(n, len(columns)) float64, raw units",
            "output": "(n, latent_dim) float64, the latent before quantisation",
        },
        "decoder": {
            "file": DECODER_FILE,
            "input": "(n, latent_dim) float64",
            "output": "(n, len(columns)) float64, raw units",
        },
        "normalisation": "folded in (shift/scale per column; training-constant columns "
        "restored by the decoder)",
    }
    with atomic_path(paths.meta) as tmp:
        tmp.write_text(json.dumps(meta, indent=1))
    log.info(
        "exported %s (latent %d) to %s and %s",
        name,
        meta["latent_dim"],
        paths.encoder,
        paths.decoder,
    )
    return paths


def export(project: Project, cfg: Config) -> ExportResult:
    """Export the project's trained model to ``output/export/`` as TorchScript."""
    refuse_whole_file(cfg, "export")  # else the model folder holds everything it needs
    return export_model(load_project_model(project), project.dir("export"))
