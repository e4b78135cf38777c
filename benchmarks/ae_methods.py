"""The autoencoder methods of the benchmark: baler_ext (its stage functions on temporary
projects) and the peer, Baler 0.0.6 (``baler-compressor`` on PyPI, optional).

Baler 0.0.6 is driven through its own ``trainer.run``, ``compressor.run`` and
``decompressor.run`` with three run-time patches (site-packages is never edited):

* ``config.lr_scheduler = False``: its ``LRScheduler`` passes ``verbose=`` to
  ``ReduceLROnPlateau``, which current torch removed;
* ``AE.encoder = AE.encode``: ``helper.compress`` calls ``model.encoder``, which the
  shipped models do not define;
* ``numba.jit`` and ``sklearn.model_selection.train_test_split`` are stubbed when those
  packages are absent (it is installed with ``--no-deps``): every ``@jit`` in Baler uses
  ``forceobj=True`` (plain Python semantics), and ``train_test_split`` is only reached
  with ``test_size > 0`` (we train on the whole training half, ``test_size = 0``).
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import io
import sys
import time
import types
from pathlib import Path

import numpy as np

from benchmarks.common import Table, copy_model, read_table, write_project_config
from benchmarks.methods import Method, register

# --------------------------------------------------------------------------- baler_ext

MODEL = {"hidden": [200, 100, 50]}  # baler_ext's default widths (Baler's AE uses the same)

#: baler_ext settings that reproduce Baler 0.0.6's training as far as baler_ext can (the
#: ``like_baler`` runs): min-max normalisation, Adam at 1e-3 without weight decay, batch 512,
#: no learning-rate schedule (Baler's is patched off: it breaks on current torch), no early
#: stopping, float64 model. Baler's loss is sum((x̂ - x)²) / n_columns per batch, i.e.
#: 512 × the MSE, plus 0.001 × an activation L1 (0.001 / 512 ≈ 2e-6 of the MSE term,
#: left out here); Adam is invariant to the loss scale, so "mse" trains alike. What still
#: differs is listed in docs/benchmarks.md.
LIKE_BALER_DATA = {"normalisation": "minmax"}
LIKE_BALER_TRAINING = {
    "loss": "mse",
    "learning_rate": 1e-3,
    "weight_decay": 0.0,
    "lr_patience": 0,
    "validation_fraction": 0.01,
}


def balerext_sections(
    data: Path,
    latent_dim: int,
    epochs: int,
    compression: dict,
    rows: int | None = None,
    like_baler: bool = False,
) -> dict:
    training = {
        "epochs": epochs,
        "batch_size": 512,
        "early_stopping_patience": 0,
        "device": "cpu",
        "checkpoint": False,
    }
    if rows:
        training["max_rows"] = rows
    data_section = {"input": [str(data)], "chunk_size": 100_000}
    if like_baler:
        training.update(LIKE_BALER_TRAINING)
        data_section.update(LIKE_BALER_DATA)
    return {
        "data": data_section,
        "model": {"latent_dim": latent_dim, **MODEL},
        "training": training,
        "compression": compression,
    }


def train_balerext(
    workdir: Path, name: str, data: Path, latent_dim: int, epochs: int, like_baler: bool = False
) -> dict:
    """Train a baler_ext model on ``data`` (the training half); return timing and paths.

    ``like_baler``: with Baler 0.0.6's normalisation and schedule (:data:`LIKE_BALER_TRAINING`).
    """
    from baler_ext.config import load_config
    from baler_ext.project import Project
    from baler_ext.stages.train import train

    cfg_path = write_project_config(
        workdir / "projects" / name,
        balerext_sections(data, latent_dim, epochs, {}, like_baler=like_baler),
    )
    t0 = time.perf_counter()
    train(Project.locate(name, workdir / "projects"), load_config(cfg_path))
    return {
        "train_s": time.perf_counter() - t0,
        "model_dir": str(workdir / "projects" / name / "output" / "model"),
    }


class _BalerExt(Method):
    """baler_ext via ``stages.compress.compress`` / ``stages.decompress.decompress``.

    Params: ``workdir``, ``model_dir`` (a trained model), ``test_path`` (the Parquet half
    to compress), ``latent_dim``, ``epochs`` and the ``[compression]`` table ``compression``.
    ``prepare`` writes the project and copies the model (not timed); the timed calls are the
    two stage functions, Parquet I/O included. The bytes are the container's (no
    passthrough columns: the sample holds only the float columns).
    """

    family = "baler_ext"

    def prepare(self, table: Table, bounds: dict) -> None:
        from baler_ext.config import load_config
        from baler_ext.project import Project
        from baler_ext.stages import compress, decompress  # noqa: F401  (imports untimed)

        p = self.params
        work = Path(p["workdir"])
        name = p["project"]
        comp = dict(p["compression"])
        if self.bounded:
            comp["bounds"] = bounds
        cfg_path = write_project_config(
            work / "projects" / name,
            balerext_sections(
                Path(p["test_path"]),
                p["latent_dim"],
                p["epochs"],
                comp,
                like_baler=p.get("like_baler", False),
            ),
        )
        self.project = Project.locate(name, work / "projects")
        copy_model(Path(p["model_dir"]), self.project.output)
        self.cfg = load_config(cfg_path)
        self._names = table.names

    def compress(self, table: Table, bounds: dict) -> bytes:
        from baler_ext.stages.compress import compress

        (result,) = compress(self.project, self.cfg)
        self.sizes = result.sizes
        return result.path.read_bytes()

    def decompress(self, blob: bytes) -> np.ndarray:
        from baler_ext.stages.decompress import decompress

        (out,) = decompress(self.project, self.cfg)
        return read_table(out, self._names).values


@register("balerext_bounded")
class BalerExtBounded(_BalerExt):
    bounded = True


@register("balerext_latent")
class BalerExtLatent(_BalerExt):
    bounded = False


# --------------------------------------------------------------------------- Baler 0.0.6


def _stub_missing() -> list[str]:
    """Stub numba/sklearn when absent (see the module docstring); return what was stubbed."""
    stubbed = []
    try:
        import numba  # noqa: F401
    except ImportError:

        def jit(*args, **kwargs):
            if args and callable(args[0]) and len(args) == 1 and not kwargs:
                return args[0]
            return lambda f: f

        nb = types.ModuleType("numba")
        nb.__spec__ = importlib.machinery.ModuleSpec("numba", None)
        nb.jit = jit  # type: ignore[attr-defined]
        sys.modules["numba"] = nb
        stubbed.append("numba.jit (identity; Baler uses forceobj=True)")
    try:
        import sklearn.model_selection  # noqa: F401
    except ImportError:

        def train_test_split(*a, **k):
            raise RuntimeError("sklearn stub: only test_size = 0 is supported")

        sk = types.ModuleType("sklearn")
        ms = types.ModuleType("sklearn.model_selection")
        sk.__spec__ = importlib.machinery.ModuleSpec("sklearn", None)
        ms.__spec__ = importlib.machinery.ModuleSpec("sklearn.model_selection", None)
        ms.train_test_split = train_test_split  # type: ignore[attr-defined]
        sk.model_selection = ms  # type: ignore[attr-defined]
        sys.modules.update({"sklearn": sk, "sklearn.model_selection": ms})
        stubbed.append("sklearn.model_selection.train_test_split (unused with test_size=0)")
    return stubbed


def import_baler() -> tuple[types.ModuleType, list[str]]:
    """Import Baler 0.0.6 with the run-time patches; ``(legacy_models module, patches)``."""
    patches = _stub_missing()
    from baler_compressor import legacy_models

    if not hasattr(legacy_models.AE, "encoder"):
        legacy_models.AE.encoder = legacy_models.AE.encode
        patches.append("AE.encoder = AE.encode")
    patches.append("config.lr_scheduler = False")
    return legacy_models, patches


def baler_config(n_columns: int, latent_dim: int, epochs: int):
    """Baler's default config (``helper.create_default_config``) for 1-D data, patched."""
    from baler_compressor.config import Config

    legacy_models, _ = import_baler()
    c = Config()
    c.data_dimension = 1
    # latent = ceil(n_columns / compression_ratio); the 0.5 keeps ceil() off float noise
    c.compression_ratio = n_columns / (latent_dim - 0.5)
    c.apply_normalization = True
    c.model_name = "AE"
    c.model_type = "dense"
    c.model = legacy_models.AE
    c.epochs = epochs
    c.lr = 0.001
    c.batch_size = 512
    c.early_stopping = False  # a fixed epoch budget, as for baler_ext
    c.lr_scheduler = False  # patch: its LRScheduler breaks on current torch
    c.early_stopping_patience = 100
    c.min_delta = 0
    c.lr_scheduler_patience = 50
    c.custom_norm = False
    c.reg_param = 0.001
    c.RHO = 0.05
    c.test_size = 0
    c.extra_compression = False
    c.intermittent_model_saving = False
    c.intermittent_saving_patience = 100
    c.mse_avg = False
    c.mse_sum = True
    c.emd = False
    c.l1 = True
    c.activation_extraction = False
    c.deterministic_algorithm = True
    c.verbose = False
    return c


def _npz(path: Path, table: Table) -> None:
    np.savez(path, data=table.values, names=np.array(table.names))


def train_baler(workdir: Path, name: str, data: Path, latent_dim: int, epochs: int) -> dict:
    """Train Baler's AE on the training half with its own loop; save the state dict."""
    import torch

    _, patches = import_baler()
    from baler_compressor import trainer

    table = read_table(data)
    d = workdir / "baler" / name
    d.mkdir(parents=True, exist_ok=True)
    _npz(d / "train.npz", table)
    cfg = baler_config(len(table.names), latent_dim, epochs)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        model, _norm, _loss = trainer.run(str(d / "train.npz"), cfg)
    train_s = time.perf_counter() - t0
    torch.save(model.state_dict(), d / "model.pt")
    return {
        "train_s": train_s,
        "model_path": str(d / "model.pt"),
        "patches": patches,
        "latent": int(cfg.latent_space_size),
    }


@register("baler_0.0.6")
class Baler(Method):
    """Baler 0.0.6: ``compressor.run`` + its ``.npz`` output, ``decompressor.run``.

    Params: ``workdir``, ``model_path``, ``latent_dim``, ``epochs``. ``prepare`` writes the
    half to compress as Baler's input ``.npz`` (data + names; not timed). The compressed
    file is Baler's own: ``np.savez`` of the latent (float64, as its model produces),
    the names, the min/max normalisation features and the shape.
    """

    family = "baler"

    def prepare(self, table: Table, bounds: dict) -> None:
        import_baler()
        import baler_compressor.compressor
        import baler_compressor.decompressor  # noqa: F401  (imports stay out of the timing)

        p = self.params
        self.dir = Path(p["workdir"]) / "baler" / p["project"]
        self.dir.mkdir(parents=True, exist_ok=True)
        self.input = self.dir / "input.npz"
        _npz(self.input, table)
        self.cfg = baler_config(len(table.names), p["latent_dim"], p["epochs"])
        self.cfg.input_path = str(self.input)

    def compress(self, table: Table, bounds: dict) -> bytes:
        from baler_compressor import compressor, helper

        with contextlib.redirect_stdout(io.StringIO()):
            data = np.load(self.input)["data"]
            norm = helper.data_processing.find_minmax(data)
            latent, names, shape = compressor.run(
                str(self.input), self.params["model_path"], norm, self.cfg
            )
            out = self.dir / "compressed.npz"
            np.savez(
                out,
                data=latent,
                names=names,
                normalization_features=norm,
                original_shape=np.array(shape),
            )
            np.save(self.dir / "normalization_features.npy", norm)
        return out.read_bytes()

    def decompress(self, blob: bytes) -> np.ndarray:
        from baler_compressor import decompressor

        with contextlib.redirect_stdout(io.StringIO()):
            values, _names, _shape = decompressor.run(
                self.params["model_path"], str(self.dir / "compressed.npz"), self.cfg
            )
        return np.asarray(values, dtype=np.float64)
