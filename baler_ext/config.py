"""Typed schema of a project's ``config.toml``.

A config is data: it is parsed with :mod:`tomllib` and validated into frozen-ish
dataclasses, one per TOML section. Every field carries a one-line ``doc`` that
``new_project`` writes as a comment and ``docs/config.md`` repeats. Unknown keys,
wrong types and bad values raise :class:`~baler_ext.errors.ConfigError` naming the
file, the key and, where it helps, the closest valid key.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import tomllib
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from baler_ext.errors import ConfigError
from baler_ext.precision import POLICIES
from baler_ext.registry import suggest  # re-exported: older code imports it from here

if TYPE_CHECKING:  # imported lazily: the analysis package loads iminuit, scipy and pandas
    from baler_ext.analysis.spec import AnalysisSpec

log = logging.getLogger(__name__)


def doc(text: str) -> dict[str, str]:
    """Field metadata holding the one-line description of a config key."""
    return {"doc": text}


#: keys naming a file format: their extra values besides the registered formats
FORMAT_KEYS: dict[tuple[str, str], tuple[str, ...]] = {
    ("data", "format"): ("auto",),
    ("output", "format"): ("same",),
}


def format_choices(section: str, key: str) -> list[str]:
    """The allowed values of a format key: its extras, then every registered format."""
    # the format registry, read on first use like REGISTRY_CHOICES (io imports this module)
    names = importlib.import_module("baler_ext.io.formats").format_names()
    return [*FORMAT_KEYS[(section, key)], *names]


def check_format(key: str, value: str) -> None:
    """``value`` must be an allowed value of the format key ``key`` (``section.key``)."""
    section, name = key.split(".")
    valid = format_choices(section, name)
    if value not in valid:
        raise ConfigError(
            f"'{key}' = {value!r} is not one of {', '.join(valid)}{suggest(value, valid)}"
        )


@dataclass
class DataConfig:
    """``[data]``: what to read and which columns to compress."""

    input: list[str] = field(
        default_factory=lambda: ["data/*.parquet"],
        metadata=doc("input file(s): a path, a glob or a list; relative to the config's folder"),
    )
    format: str = field(
        default="auto",
        metadata=doc("auto (from the extension and contents) | root (TTree) | rntuple | parquet"),
    )
    tree: str | None = field(
        default=None,
        metadata=doc("TTree or RNTuple name; default: the only one in the file"),
    )
    columns: list[str] = field(
        default_factory=lambda: ["*"],
        metadata=doc(
            "names or glob patterns of float columns to compress; columns of several "
            "structures (flat branches, collections with their own counters) make a "
            "whole-file project: one model per structure group, one container per input "
            "(docs/FORMAT.md, Whole files)"
        ),
    )
    exclude: list[str] = field(
        default_factory=list,
        metadata=doc("names or globs left out entirely (not read, not written back)"),
    )
    passthrough: list[str] = field(
        default_factory=list,
        metadata=doc("names or globs of float columns stored losslessly instead of compressed"),
    )
    nan_policy: str = field(
        default="error", metadata=doc("error | drop: what to do with rows holding NaN or inf")
    )
    chunk_size: int = field(
        default=100_000, metadata=doc("entries read and compressed per chunk (bounds memory)")
    )
    normalisation: str = field(
        default="standard",
        metadata=doc("standard (mean/std) | minmax; fitted on the training split only"),
    )

    def validate(self) -> None:
        """Check ``format`` against the registered file formats."""
        check_format("data.format", self.format)


@dataclass
class ModelConfig:
    """``[model]``: which autoencoder and its size."""

    name: str = field(default="sae", metadata=doc("registered model name (docs/config.md, Models)"))
    latent_dim: int | None = field(
        default=None, metadata=doc("latent size; if unset, ceil(n_columns / compression_ratio)")
    )
    compression_ratio: float = field(
        default=2.0, metadata=doc("columns per latent dimension, used when latent_dim is unset")
    )
    dtype: str = field(default="float64", metadata=doc("float64 | float32: model and data dtype"))
    hidden: list[int] = field(
        default_factory=lambda: [200, 100, 50],
        metadata=doc("encoder hidden widths; the decoder mirrors them"),
    )
    activation: str = field(
        default="leaky_relu", metadata=doc("leaky_relu | relu | elu | tanh | silu")
    )
    options: dict[str, Any] = field(
        default_factory=dict, metadata=doc("model-specific options, e.g. {beta = 1.0}")
    )


@dataclass
class TrainingConfig:
    """``[training]``: optimisation of the autoencoder."""

    epochs: int = field(default=100, metadata=doc("maximum number of epochs"))
    batch_size: int = field(default=512, metadata=doc("rows per optimisation step"))
    learning_rate: float = field(default=1e-3, metadata=doc("Adam learning rate"))
    weight_decay: float = field(default=0.0, metadata=doc("Adam weight decay"))
    loss: str = field(
        default="mse", metadata=doc("reconstruction loss: mse | mse_sum | l1_mean | l1_sum")
    )
    validation_fraction: float = field(
        default=0.2, metadata=doc("fraction of rows held out for validation and early stopping")
    )
    seed: int = field(default=42, metadata=doc("seed of the split, initialisation and shuffling"))
    early_stopping_patience: int = field(
        default=15, metadata=doc("epochs without improvement before stopping; 0 disables")
    )
    min_delta: float = field(
        default=0.0, metadata=doc("smallest validation-loss decrease that counts as improvement")
    )
    max_rows: int | None = field(
        default=None, metadata=doc("use at most this many rows for training (random, seeded)")
    )
    device: str = field(default="auto", metadata=doc("auto (CUDA when present) | cpu | cuda"))
    init: str = field(
        default="he",
        metadata=doc(
            "weight initialisation: he | xavier | orthogonal | random (N(0, 0.01^2)) | zero"
        ),
    )
    lr_patience: int = field(
        default=5, metadata=doc("ReduceLROnPlateau: epochs without improvement; 0 disables")
    )
    lr_factor: float = field(default=0.5, metadata=doc("ReduceLROnPlateau: factor on the LR"))
    min_lr: float = field(default=1e-6, metadata=doc("ReduceLROnPlateau: lowest learning rate"))
    grad_clip: float = field(
        default=0.0, metadata=doc("clip the gradient norm to this value; 0 disables")
    )
    activation_l1: float = field(
        default=0.0, metadata=doc("weight of the L1 activation-sparsity penalty; 0 disables")
    )
    checkpoint: bool = field(
        default=True, metadata=doc("write output/model/checkpoint.pt every epoch (for --resume)")
    )
    beta_schedule: str = field(
        default="constant",
        metadata=doc(
            "epoch-dependent factor on the KL weight beta of vae/cvae: constant | "
            "linear (warm-up from 0) | cyclical (repeated warm-ups)"
        ),
    )
    beta_warmup_epochs: int = field(
        default=10, metadata=doc("linear: epochs over which beta rises from 0 to its value")
    )
    beta_cycle_epochs: int = field(
        default=10, metadata=doc("cyclical: length of one cycle in epochs")
    )
    beta_ramp_fraction: float = field(
        default=0.5, metadata=doc("cyclical: fraction of each cycle spent rising from 0")
    )

    def validate(self) -> None:
        """Check the β-schedule lengths (>= 1) and ramp fraction (in (0, 1])."""
        if self.beta_warmup_epochs < 1 or self.beta_cycle_epochs < 1:
            raise ConfigError(
                "'training.beta_warmup_epochs' and 'training.beta_cycle_epochs' must be >= 1"
            )
        if not 0.0 < self.beta_ramp_fraction <= 1.0:
            raise ConfigError(
                f"'training.beta_ramp_fraction' must be in (0, 1], got {self.beta_ramp_fraction}"
            )


@dataclass
class CompressionConfig:
    """``[compression]``: what goes into the compressed file."""

    mode: str = field(
        default="bounded",
        metadata=doc(
            "latent: the latent only, lossy, no bound | bounded: every value within its bound"
        ),
    )
    latent_dtype: str = field(
        default="float32", metadata=doc("storage dtype of the latent: float64 | float32 | float16")
    )
    latent_bits: int | None = field(
        default=None,
        metadata=doc("quantise the latent to this many bits per dimension (bounded: default 8)"),
    )
    bounds: dict[str, dict[str, float]] = field(
        default_factory=lambda: {"default": {"rel": 1e-3}},
        metadata=doc(
            "bounded mode: max error per value, {abs = x}, {rel = x} or {bits = n} "
            "(float32 mantissa bits kept) per column name, glob pattern (the most "
            "specific wins) or default; see docs/precision.md"
        ),
    )
    policy: str = field(
        default="none",
        metadata=doc(
            "bounded mode: built-in per-branch precision the bounds extend: none | "
            "nanoaod (NanoAOD's own mantissa precisions, docs/precision.md)"
        ),
    )
    entropy_coder: str = field(
        default="range",
        metadata=doc("coder of the integer codes: range (adaptive range coder) | zstd"),
    )
    verify: bool = field(
        default=False,
        metadata=doc(
            "bounded mode: decode every chunk again at compress time and refuse to write "
            "the file unless it gives the encoder's values bit for bit (the content "
            "digest is the encoder's reconstruction either way, and decompress refuses a "
            "mismatch; this finds one before the originals are deleted, at ~1/3 more "
            "compress time)"
        ),
    )
    latent_policy: str = field(
        default="auto",
        metadata=doc(
            "bounded mode, per chunk: auto (keep the latent only when it saves more "
            "residual bits than it costs) | always | never (no latent: each column "
            "predicted by a per-chunk least-squares fit on the columns decoded "
            "before it)"
        ),
    )
    relations: str = field(
        default="auto",
        metadata=doc(
            "bounded mode: predict derived columns from decoded ones where the "
            "relation holds on the data — auto (Cartesian: pt, phi, eta, energy from "
            "px, py, pz, mass where possible, else polar) | polar (px, py, pz, energy "
            "from pt, eta, phi, mass) | cartesian | none; sum-to-one fractions always"
        ),
    )
    probability_model: str = field(
        default="auto",
        metadata=doc(
            "bounded mode, how the integer codes are entropy-coded: auto (the learned "
            "model when the trained model has one, else static) | learned | static "
            "(one histogram per stream and chunk)"
        ),
    )
    dither: bool = field(
        default=True,
        metadata=doc(
            "bounded mode: subtractive dither (uniform errors, no comb of grid values; "
            "the bound holds either way)"
        ),
    )
    event_column: str = field(
        default="event",
        metadata=doc(
            "integer column whose equal consecutive values mark the objects of one "
            "event (flat tables; jagged inputs use their counts): the learned model's "
            "event context"
        ),
    )
    relation_roles: dict[str, str] = field(
        default_factory=dict,
        metadata=doc(
            "bounded mode: {column = role} for relation detection, roles pt, eta, "
            "phi, mass, energy, px, py, pz (default: by column name, also with a "
            "prefix such as Jet_pt)"
        ),
    )
    embed_decoder: bool = field(
        default=False, metadata=doc("store the decoder weights in each compressed file")
    )
    zstd_level: int = field(
        default=19,
        metadata=doc("zstd level of the compressed columns' sections and the index (1-22)"),
    )
    passthrough_zstd_level: int = field(
        default=3,
        metadata=doc(
            "zstd level of what is not compressed (passthrough table, jagged "
            "counts; 1-22): on the example's integer columns 3 runs ~40x faster "
            "than 19 for 17% more bytes"
        ),
    )

    def validate(self) -> None:
        """Check ``bounds``: each entry holds exactly one of ``abs``/``rel``, > 0 and finite."""
        if self.latent_bits is not None and not 1 <= self.latent_bits <= 24:
            raise ConfigError(f"'compression.latent_bits' must be in 1-24, got {self.latent_bits}")
        for key, value, valid in (
            ("latent_policy", self.latent_policy, ("auto", "always", "never")),
            ("relations", self.relations, ("auto", "polar", "cartesian", "none")),
        ):
            if value not in valid:
                raise ConfigError(
                    f"'compression.{key}' must be one of {', '.join(valid)}, got '{value}'"
                )
        if "default" not in self.bounds and self.policy == "none":
            raise ConfigError(
                "'compression.bounds' needs a default entry, e.g. bounds = {default = {rel = 1e-3}}"
            )
        for col, spec in self.bounds.items():
            if len(spec) != 1 or next(iter(spec)) not in ("abs", "rel", "bits"):
                raise ConfigError(
                    f"'compression.bounds.{col}' = {spec!r}: give exactly one of abs, rel or "
                    "bits, e.g. {abs = 1e-3}"
                )
            kind, amount = next(iter(spec.items()))
            if kind == "bits" and not (float(amount).is_integer() and 1 <= amount <= 23):
                raise ConfigError(
                    f"'compression.bounds.{col}.bits' must be an integer in "
                    f"1-23 (float32 mantissa bits), got {amount}"
                )
            if not 0.0 < amount < float("inf"):
                raise ConfigError(
                    f"'compression.bounds.{col}' must be > 0 and finite, got {amount}"
                )


@dataclass
class OutputConfig:
    """``[output]``: where and how the decompressed data is written."""

    format: str = field(
        default="same", metadata=doc("same (as the input) | root (TTree) | rntuple | parquet")
    )
    directory: str | None = field(
        default=None,
        metadata=doc("folder for decompressed files; default: output/decompressed of the project"),
    )
    tree: str | None = field(
        default=None,
        metadata=doc("TTree/RNTuple name when writing ROOT; default: the input's"),
    )

    def validate(self) -> None:
        """Check ``format`` against the registered file formats."""
        check_format("output.format", self.format)


@dataclass
class EvaluationConfig:
    """``[evaluation]``: what ``--mode evaluate`` plots and lists."""

    colour_by: str | None = field(
        default=None,
        metadata=doc(
            "column of the input that colours the latent plots; default: the first "
            "integer flag (2-10 values), else the first compressed column"
        ),
    )
    top_k: int = field(default=10, metadata=doc("most anomalous rows listed in metrics.json"))
    latent_rows: int = field(
        default=20_000, metadata=doc("rows encoded for the latent plots (random, seeded)")
    )
    cuts: list[str] = field(
        default_factory=list,
        metadata=doc(
            "cuts whose pass count is compared before/after with its paired error, "
            "e.g. ['pt > 600']"
        ),
    )
    plots: str = field(
        default="summary",
        metadata=doc(
            "'summary': a summary page, an overview of every column and the full "
            "plots of flagged columns (comb, broken bound, moved cut); 'all': "
            "every plot of every column and the latent views"
        ),
    )

    latent_probing: bool = field(
        default=False,
        metadata=doc(
            "also write output/evaluation/probing/: latent traversal, prior and PCA "
            "samples decoded, t-SNE (needs scikit-learn)"
        ),
    )
    tsne_rows: int = field(
        default=2000, metadata=doc("latent_probing: rows embedded by t-SNE (it is slow)")
    )

    def validate(self) -> None:
        """Check ``top_k >= 0``, ``latent_rows > 0``, ``tsne_rows >= 3`` and that every cut
        parses."""
        from baler_ext.analysis.selection import validate_cut

        if self.top_k < 0:
            raise ConfigError(f"'evaluation.top_k' must be >= 0, got {self.top_k}")
        if self.latent_rows <= 0:
            raise ConfigError(f"'evaluation.latent_rows' must be > 0, got {self.latent_rows}")
        for cut in self.cuts:
            validate_cut(cut)
        if self.tsne_rows < 3:
            raise ConfigError(f"'evaluation.tsne_rows' must be >= 3, got {self.tsne_rows}")


@dataclass
class ScanConfig:
    """``[scan]``: a grid of config values trained by ``--mode scan``.

    Written as ``"section.key" = [values...]`` lines (or ``grid = {...}``); every
    combination is trained as a sub-project under ``output/scan/``.
    """

    grid: dict[str, list[Any]] = field(
        default_factory=dict,
        metadata=doc('"section.key" = [values...], e.g. "model.latent_dim" = [4, 8]'),
    )
    metric: str = field(
        default="rms_sigma",
        metadata=doc(
            "what runs are ranked on: rms_sigma (validation RMS error / column σ, "
            "mean over columns) | bounded_ratio (compression ratio in bounded mode) "
            "| mass_shift (|Δm|/σ of the [analysis] fit)"
        ),
    )


@dataclass
class SearchConfig:
    """``[search]``: a Bayesian hyper-parameter search run by ``--mode search`` (optuna TPE).

    The space is written like the ``[scan]`` grid: ``"section.key" = [choices...]`` or
    ``"section.key" = {low = x, high = y, log = true}`` (integers when both bounds are
    integers, optional ``step``), under ``[search.space]``.
    """

    space: dict[str, Any] = field(
        default_factory=dict,
        metadata=doc('"section.key" = [choices] or {low = x, high = y, log = false, step = s}'),
    )
    trials: int = field(
        default=20, metadata=doc("finished trials wanted in the study (a rerun tops it up)")
    )
    metric: str = field(
        default="rms_sigma",
        metadata=doc("objective, as scan.metric: rms_sigma | bounded_ratio | mass_shift"),
    )
    seed: int = field(default=0, metadata=doc("seed of the TPE sampler"))
    startup_trials: int = field(
        default=10, metadata=doc("random trials before TPE starts modelling the objective")
    )
    study: str = field(
        default="search", metadata=doc("study name in output/search/search.db (resumable)")
    )

    def validate(self) -> None:
        """Check ``trials >= 1`` and ``startup_trials >= 0``."""
        if self.trials < 1:
            raise ConfigError(f"'search.trials' must be >= 1, got {self.trials}")
        if self.startup_trials < 0:
            raise ConfigError(f"'search.startup_trials' must be >= 0, got {self.startup_trials}")


@dataclass
class AnomalyConfig:
    """``[anomaly]``: ``--mode anomaly``, reconstruction-error scores of a test sample
    against a reference sample (see docs/anomaly.md)."""

    test: list[str] = field(
        default_factory=list,
        metadata=doc(
            "test file(s) to score: a path, a glob or a list (relative to the config's folder)"
        ),
    )
    reference: list[str] = field(
        default_factory=list,
        metadata=doc("reference file(s) that set the score scale; default: data.input"),
    )
    truth: str | None = field(
        default=None,
        metadata=doc("column of the test file(s), nonzero for anomalous rows: ROC and AUC"),
    )
    top_k: int = field(default=20, metadata=doc("most anomalous test rows listed"))
    bins: int = field(default=60, metadata=doc("bins of the score histograms"))

    def validate(self) -> None:
        """Check ``top_k >= 0`` and ``bins >= 5``."""
        if self.top_k < 0:
            raise ConfigError(f"'anomaly.top_k' must be >= 0, got {self.top_k}")
        if self.bins < 5:
            raise ConfigError(f"'anomaly.bins' must be >= 5, got {self.bins}")


@dataclass
class ExecutionConfig:
    """``[execution]``: where compress and decompress run (see docs/distributed.md)."""

    executor: str = field(
        default="local",
        metadata=doc("local (one file after another here) | dask (one task per file)"),
    )
    scheduler: str | None = field(
        default=None,
        metadata=doc("dask scheduler address, e.g. tcp://host:8786; default: a LocalCluster"),
    )
    workers: int = field(default=2, metadata=doc("workers of the LocalCluster (no scheduler)"))
    retries: int = field(
        default=1, metadata=doc("dask retries of a file whose task raised (worker deaths: always)")
    )
    threads: int | None = field(
        default=None,
        metadata=doc(
            "CPU threads of torch and the numeric libraries; default: the cores this "
            "process may use (CPU affinity, capped by OMP_NUM_THREADS), 1 per dask "
            "worker process"
        ),
    )


@dataclass
class RateConfig:
    """``[rate]``: the learned probability model of the bounded codes (trained by train)."""

    enabled: bool = field(
        default=True,
        metadata=doc("train the learned probability model after the autoencoder (bounded mode)"),
    )
    hidden: list[int] = field(
        default_factory=lambda: [128, 128],
        metadata=doc("hidden units of the masked autoencoder (MADE) per layer"),
    )
    epochs: int = field(default=20, metadata=doc("maximum training epochs"))
    batch_size: int = field(default=128, metadata=doc("rows per optimisation step"))
    learning_rate: float = field(default=3e-3, metadata=doc("Adam learning rate"))
    schedule: str = field(
        default="cosine",
        metadata=doc(
            "learning-rate schedule: cosine (from learning_rate down to 2 % of it over "
            "the epochs; on the example 82.0 validation bits/jet in 20 epochs) | plateau "
            "(halved after 2 epochs without improvement; 82.3 in 60 epochs)"
        ),
    )
    patience: int = field(
        default=8, metadata=doc("stop after this many epochs without a better validation rate")
    )
    order: str = field(
        default="search",
        metadata=doc(
            "coding order of the columns: search (short fits of the natural, greedy "
            "and reversed greedy orders; the best on validation wins) | greedy "
            "(cheapest conditional first, a Gaussian proxy) | natural (column order)"
        ),
    )
    event_context: str = field(
        default="auto",
        metadata=doc(
            "condition each object on the previous object of its event: auto (when "
            "the input has events) | none"
        ),
    )
    integer_context: str = field(
        default="auto",
        metadata=doc(
            "condition on the integer columns stored losslessly in the same file "
            "(multiplicities, flags; free for the decoder): auto | none"
        ),
    )
    side_information: str = field(
        default="none",
        metadata=doc(
            "condition on the autoencoder's quantised latent, stored per row: none | "
            "latent (a hyperprior; its bits count in the file)"
        ),
    )
    latent_bits: int = field(
        default=4, metadata=doc("bits per latent dimension of that side information")
    )
    mixture: int = field(
        default=4,
        metadata=doc(
            "logistics per code: 1 (one discretised logistic, fixed tables) or 2-8 (a "
            "mixture of discretised logistics, for skewed and multimodal conditionals)"
        ),
    )
    mixture_start: str = field(
        default="both",
        metadata=doc(
            "how a mixture is trained: both (one logistic per code, a mixture started "
            "from it and one from scratch; the best on validation is kept; three times "
            "the training time) | single (the first two) | scratch (the mixture alone)"
        ),
    )
    mixture_columns: str = field(
        default="all",
        metadata=doc(
            "which columns a mixture codes: all | independent (the relation residuals of "
            "the derived columns then use its first component alone)"
        ),
    )
    max_rows: int | None = field(
        default=200000, metadata=doc("train on at most this many rows (the first ones)")
    )
    augment: int = field(
        default=1,
        metadata=doc(
            "copies of the training events turned about the beam axis and reflected in z "
            "(when kinematic relations are detected; 0: none). Each copy adds the training "
            "rows once more: on the shared jets one copy gives 0.34 (P1) and 0.54 (P2) "
            "fewer bits per jet for twice the rate model's training time; 7 copies with "
            "refit give 80.40 (P1) and 118.08 (P2) bits per jet against 80.67 and 118.52 "
            "with the defaults, for about six times the training time"
        ),
    )
    refit: bool = field(
        default=False,
        metadata=doc(
            "after the validation split has chosen the order, the start and the epochs, "
            "train the chosen model once more on the training and validation rows "
            "together (a quarter more data; the validation rate reported is the chosen "
            "fit's, measured before). On the shared jets at P1: 80.76 instead of 80.84 "
            "bits per jet for 40 % more training time"
        ),
    )

    def validate(self) -> None:
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ConfigError("'rate.hidden' needs at least one layer of >= 1 units")
        if not 1 <= self.latent_bits <= 12:
            raise ConfigError(f"'rate.latent_bits' must be in 1-12, got {self.latent_bits}")
        if not 1 <= self.mixture <= 8:
            raise ConfigError(f"'rate.mixture' must be in 1-8, got {self.mixture}")
        if self.mixture_columns not in ("all", "independent"):
            raise ConfigError(
                f"'rate.mixture_columns' must be all or independent, got {self.mixture_columns!r}"
            )
        if not 0 <= self.augment <= 16:
            raise ConfigError(f"'rate.augment' must be in 0-16 copies, got {self.augment}")
        if self.mixture_start not in ("both", "single", "scratch"):
            raise ConfigError(
                "'rate.mixture_start' must be 'both', 'single' or 'scratch', got "
                f"{self.mixture_start!r}"
            )


@dataclass
class Config:
    """A whole validated project configuration.

    ``[analysis]`` is kept as its TOML table and built into an
    :class:`~baler_ext.analysis.spec.AnalysisSpec` on first use of :attr:`analysis`
    (:func:`load_config` does that at once unless asked not to), so that commands which
    never fit anything (``--mode info``) do not import iminuit, scipy and pandas.
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    compression: CompressionConfig = field(default_factory=CompressionConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    analysis_table: dict[str, Any] | None = field(default=None, repr=False)
    scan: ScanConfig | None = None
    search: SearchConfig | None = None
    anomaly: AnomalyConfig | None = None
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    rate: RateConfig = field(default_factory=RateConfig)
    source: Path | None = None
    _analysis: Any = field(default=None, init=False, repr=False, compare=False)

    @property
    def analysis(self) -> AnalysisSpec | None:
        """The validated ``[analysis]`` section, or None when the config has none.

        Raises
        ------
        ConfigError
            When the table fails validation (first use only; :func:`load_config`
            validates it eagerly by default).
        """
        if self._analysis is None and self.analysis_table is not None:
            where = str(self.source) if self.source is not None else "config"
            self._analysis = build_section(_analysis_spec(), self.analysis_table, where, "analysis")
        return self._analysis

    @analysis.setter
    def analysis(self, spec: AnalysisSpec | None) -> None:
        self._analysis = spec
        self.analysis_table = None if spec is None else dataclasses.asdict(spec)

    @property
    def base_dir(self) -> Path:
        """Folder that relative paths in the config are resolved against."""
        return self.source.parent if self.source is not None else Path.cwd()


def _analysis_spec() -> type:
    from baler_ext.analysis.spec import AnalysisSpec

    return AnalysisSpec


#: every section, in the order the docs and ``new_project`` show them
SECTION_NAMES: tuple[str, ...] = (
    "data",
    "model",
    "training",
    "compression",
    "rate",
    "output",
    "evaluation",
    "analysis",
    "scan",
    "search",
    "anomaly",
    "execution",
)
#: sections built from their dataclass at load time
SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "training": TrainingConfig,
    "compression": CompressionConfig,
    "output": OutputConfig,
    "evaluation": EvaluationConfig,
    "scan": ScanConfig,
    "search": SearchConfig,
    "anomaly": AnomalyConfig,
    "execution": ExecutionConfig,
    "rate": RateConfig,
}
#: sections whose dataclass is imported only when the section is used
LAZY_SECTIONS: dict[str, Callable[[], type]] = {"analysis": _analysis_spec}
OPTIONAL_SECTIONS = frozenset({"analysis", "scan", "search", "anomaly"})
#: keys of [scan] that are settings, not grid entries
SCAN_KEYS = ("metric",)


def all_sections() -> dict[str, type]:
    """Every section's dataclass in documentation order (imports the lazy ones)."""
    return {
        name: SECTIONS[name] if name in SECTIONS else LAZY_SECTIONS[name]()
        for name in SECTION_NAMES
    }


#: values fixed by the code itself; the names of a registry are in REGISTRY_CHOICES
FIXED_CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("data", "nan_policy"): ("error", "drop"),
    ("data", "normalisation"): ("standard", "minmax"),
    ("model", "dtype"): ("float64", "float32"),
    ("model", "activation"): ("leaky_relu", "relu", "elu", "tanh", "silu"),
    ("training", "device"): ("auto", "cpu", "cuda"),
    ("training", "init"): ("he", "xavier", "orthogonal", "random", "zero"),
    ("training", "beta_schedule"): ("constant", "linear", "cyclical"),
    ("compression", "policy"): tuple(POLICIES),
    ("compression", "latent_dtype"): ("float64", "float32", "float16"),
    ("compression", "probability_model"): ("auto", "learned", "static"),
    ("rate", "order"): ("search", "greedy", "natural"),
    ("rate", "event_context"): ("auto", "none"),
    ("rate", "integer_context"): ("auto", "none"),
    ("rate", "side_information"): ("none", "latent"),
    ("rate", "schedule"): ("cosine", "plateau"),
    ("execution", "executor"): ("local", "dask"),
    ("evaluation", "plots"): ("summary", "all"),
    ("analysis", "tagger_signal"): ("low", "high"),
    ("scan", "metric"): ("rms_sigma", "bounded_ratio", "mass_shift"),
    ("search", "metric"): ("rms_sigma", "bounded_ratio", "mass_shift"),
}


#: keys whose valid values are the names registered in a :class:`~baler_ext.registry.Registry`
#: (``module``, ``attribute``). The module is imported by name when a value is checked
#: (:func:`importlib.import_module`), so that config.py does not depend on the packages
#: above it and the names are never copied here; each of these modules imports without
#: torch, which keeps ``--help`` and config errors fast.
REGISTRY_CHOICES: dict[tuple[str, str], tuple[str, str]] = {
    ("training", "loss"): ("baler_ext.losses", "RECONSTRUCTION_LOSSES"),
    ("compression", "mode"): ("baler_ext.codec.modes", "MODE_REGISTRY"),
    ("compression", "entropy_coder"): ("baler_ext.codec.entropy", "CODER_REGISTRY"),
}


class _Choices(Mapping[tuple[str, str], tuple[str, ...]]):
    """``(section, key)`` -> valid values: :data:`FIXED_CHOICES` and, read from their
    registries on first use, :data:`REGISTRY_CHOICES`."""

    def __getitem__(self, item: tuple[str, str]) -> tuple[str, ...]:
        if item in FIXED_CHOICES:
            return FIXED_CHOICES[item]
        module, attribute = REGISTRY_CHOICES[item]
        return tuple(getattr(importlib.import_module(module), attribute).names())

    def __iter__(self) -> Iterator[tuple[str, str]]:
        yield from FIXED_CHOICES
        yield from REGISTRY_CHOICES

    def __len__(self) -> int:
        return len(FIXED_CHOICES) + len(REGISTRY_CHOICES)


#: every key with a closed set of values (a Mapping, filled lazily from the registries)
CHOICES: Mapping[tuple[str, str], tuple[str, ...]] = _Choices()


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(tp))
        return f"{origin.__name__}[{args}]"
    if tp is type(None):
        return "nothing"
    return getattr(tp, "__name__", str(tp))


def _conforms(value: Any, tp: Any) -> tuple[bool, Any]:
    """Check ``value`` against annotation ``tp``; return (ok, coerced value)."""
    if tp is Any:
        return True, value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            ok, coerced = _conforms(value, arg)
            if ok:
                return True, coerced
        return False, value
    if tp is type(None):
        return value is None, value
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, str) and item_tp is str:
            return True, [value]
        if not isinstance(value, list):
            return False, value
        out = []
        for item in value:
            ok, coerced = _conforms(item, item_tp)
            if not ok:
                return False, value
            out.append(coerced)
        return True, out
    if origin is dict:
        _key_tp, val_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            return False, value
        out_d = {}
        for k, v in value.items():
            ok, coerced = _conforms(v, val_tp)
            if not ok:
                return False, value
            out_d[k] = coerced
        return True, out_d
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False, value
        return True, float(value)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is str:
        return isinstance(value, str), value
    if dataclasses.is_dataclass(tp):
        return isinstance(value, dict), value
    return isinstance(value, tp), value


def build_section(cls: type, values: dict[str, Any], where: str, section: str) -> Any:
    """Validate a TOML table against dataclass ``cls`` and instantiate it.

    Parameters
    ----------
    cls
        The section's dataclass.
    values
        The TOML table.
    where
        File name used in error messages.
    section
        Dotted section name used in error messages.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(
                f"{where}: unknown key '{section}.{key}'{suggest(key, fields)}; "
                f"valid keys of [{section}]: {', '.join(fields)}"
            )
        ok, coerced = _conforms(value, hints[key])
        if not ok:
            raise ConfigError(
                f"{where}: '{section}.{key}' must be {_type_name(hints[key])}, "
                f"got {type(value).__name__} {value!r}"
            )
        choices = CHOICES.get((section, key))
        if choices is not None and coerced not in choices:
            raise ConfigError(
                f"{where}: '{section}.{key}' = {coerced!r} is not one of "
                f"{', '.join(choices)}{suggest(str(coerced), choices)}"
            )
        kwargs[key] = coerced
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj


def _check_values(cfg: Config, where: str) -> None:
    def positive(section: str, key: str, value: float, allow_zero: bool = False) -> None:
        if value < 0 or (value == 0 and not allow_zero):
            raise ConfigError(f"{where}: '{section}.{key}' must be > 0, got {value}")

    positive("data", "chunk_size", cfg.data.chunk_size)
    positive("training", "epochs", cfg.training.epochs)
    positive("training", "batch_size", cfg.training.batch_size)
    positive("training", "learning_rate", cfg.training.learning_rate)
    positive("model", "compression_ratio", cfg.model.compression_ratio)
    positive("training", "early_stopping_patience", cfg.training.early_stopping_patience, True)
    if cfg.model.latent_dim is not None:
        positive("model", "latent_dim", cfg.model.latent_dim)
    if not 0.0 < cfg.training.validation_fraction < 1.0:
        raise ConfigError(
            f"{where}: 'training.validation_fraction' must be between 0 and 1 (exclusive), "
            f"got {cfg.training.validation_fraction}"
        )
    if any(w <= 0 for w in cfg.model.hidden):
        raise ConfigError(
            f"{where}: 'model.hidden' widths must be positive, got {cfg.model.hidden}"
        )
    if not cfg.data.input:
        raise ConfigError(f"{where}: 'data.input' is empty; give at least one file or glob")
    for key in ("zstd_level", "passthrough_zstd_level"):
        if not 1 <= getattr(cfg.compression, key) <= 22:
            raise ConfigError(f"{where}: 'compression.{key}' must be in 1-22")
    positive("execution", "workers", cfg.execution.workers)
    positive("execution", "retries", cfg.execution.retries, True)
    if cfg.execution.threads is not None:
        positive("execution", "threads", cfg.execution.threads)


def parse_override(item: str) -> tuple[list[str], Any]:
    """Parse one ``--set section.key=value`` item; the value is read as TOML.

    A value that is not valid TOML (``--set model.name=sae``) is taken as a string.
    """
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. training.epochs=5")
    key, raw = item.split("=", 1)
    path = [p.strip() for p in key.strip().split(".") if p.strip()]
    if len(path) < 2:
        raise ConfigError(f"--set {item!r}: the key must be section.key, e.g. training.epochs")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError as exc:
        if raw.strip()[:1] in ("[", "{", '"', "'"):  # meant as TOML: say so, no string
            raise ConfigError(f"--set {item!r}: the value is not valid TOML ({exc})") from None
        value = raw
    return path, value


def apply_overrides(raw: dict[str, Any], overrides: typing.Sequence[str]) -> dict[str, Any]:
    """Apply ``--set`` items to a raw TOML dictionary (in place) and return it."""
    for item in overrides:
        path, value = parse_override(item)
        node = raw
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: '{part}' is not a table")
        node[path[-1]] = value
    return raw


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"latent_dim": [4]}}`` -> ``{"model.latent_dim": [4]}`` (for ``[scan]``)."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _flatten_space(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Like :func:`_flatten`, but a ``{low, high, ...}`` table is one entry (a range)."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict) and not ({"low", "high"} & set(value)):
            out.update(_flatten_space(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_from_dict(
    raw: dict[str, Any], where: str, source: Path | None = None, defer_analysis: bool = False
) -> Config:
    """Validate a raw TOML dictionary into a :class:`Config`.

    ``[analysis]`` is validated last (it imports the analysis package), or on first use
    of :attr:`Config.analysis` with ``defer_analysis``.
    """
    sections: dict[str, Any] = {}
    analysis_table: dict[str, Any] | None = None
    for name, table in raw.items():
        if name not in SECTION_NAMES:
            raise ConfigError(
                f"{where}: unknown section [{name}]{suggest(name, SECTION_NAMES)}; "
                f"valid sections: {', '.join(SECTION_NAMES)}"
            )
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: '{name}' must be a table ([{name}]), got {table!r}")
        if name in LAZY_SECTIONS:
            analysis_table = table
            continue
        if name == "scan":  # "section.key" = [values] lines (quoted or not) form the grid
            plain = {k: table[k] for k in SCAN_KEYS if k in table}
            table = {
                **plain,
                "grid": {
                    **table.get("grid", {}),
                    **_flatten(
                        {k: v for k, v in table.items() if k != "grid" and k not in SCAN_KEYS}
                    ),
                },
            }
        if name == "search" and isinstance(table.get("space"), dict):
            table = {**table, "space": _flatten_space(table["space"])}
        sections[name] = build_section(SECTIONS[name], table, where, name)
    for name, cls in SECTIONS.items():
        if name not in sections and name not in OPTIONAL_SECTIONS:
            sections[name] = cls()
    cfg = Config(**sections, analysis_table=analysis_table, source=source)
    _check_values(cfg, where)
    if analysis_table is not None and not defer_analysis:
        cfg._analysis = build_section(_analysis_spec(), analysis_table, where, "analysis")
    return cfg


def load_config(
    path: Path, overrides: typing.Sequence[str] = (), defer_analysis: bool = False
) -> Config:
    """Read, override and validate a project's ``config.toml``.

    Parameters
    ----------
    path
        The TOML file.
    overrides
        ``--set section.key=value`` items.
    defer_analysis
        Validate ``[analysis]`` on first use instead of now (for commands that never
        fit, so that they do not import the analysis package).

    Raises
    ------
    ConfigError
        When the file is missing, is not valid TOML, or fails validation.
    """
    if not path.is_file():
        raise ConfigError(
            f"config file {path} does not exist; create a project with "
            "'baler_ext --project NAME --mode new_project'"
        )
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    apply_overrides(raw, overrides)
    try:
        return config_from_dict(
            raw, str(path), source=path.resolve(), defer_analysis=defer_analysis
        )
    except ConfigError as exc:  # a bad key given with --set is the --set's fault, not the file's
        for item in overrides:
            key = item.split("=", 1)[0].strip()
            if f"'{key}'" in str(exc) or f"unknown section [{key.split('.')[0]}]" in str(exc):
                raise ConfigError(str(exc).replace(f"{path}:", f"--set {item!r}:", 1)) from None
        raise


def to_dict(cfg: Config) -> dict[str, Any]:
    """The config as a plain dictionary (sections only), e.g. to store with a model."""
    out: dict[str, Any] = {}
    for name in SECTION_NAMES:
        section = getattr(cfg, name)
        if section is not None:
            out[name] = dataclasses.asdict(section)
    return out


# --- writing a commented default config -------------------------------------------------


def _toml_key(key: str) -> str:
    bare = key and all(ch.isascii() and (ch.isalnum() or ch in "_-") for ch in key)
    return key if bare else toml_value(key)


def toml_value(value: Any) -> str:
    """Render a Python value as an inline TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # keys such as glob patterns ("*_pt") are quoted
        return "{" + ", ".join(f"{_toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot render {value!r} as TOML")


def render_section(name: str, obj: Any, commented: bool = False) -> str:
    """Render one section with every key, its default and a one-line comment."""
    prefix = "# " if commented else ""
    lines = [f"{prefix}[{name}]"]
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        comment = f.metadata.get("doc", "")
        if value is None:
            lines.append(f"# {f.name} = ...  # {comment}")
        else:
            lines.append(f"{prefix}{f.name} = {toml_value(value)}  # {comment}")
    return "\n".join(lines)


def render_default_config(
    input_paths: typing.Sequence[str] | None = None, with_analysis: bool = True
) -> str:
    """A full ``config.toml`` with every key, its default and a one-line comment."""
    cfg = Config()
    if input_paths is not None:
        cfg.data.input = list(input_paths)
    parts = [
        "# baler_ext project configuration. Every key is shown with its default.",
        "# Relative paths are resolved against the folder of this file.",
        "# Override any key for one run with --set section.key=value.",
        "",
    ]
    for name in SECTIONS:
        if name in OPTIONAL_SECTIONS:
            continue
        parts.append(render_section(name, getattr(cfg, name)))
        parts.append("")
    if with_analysis:
        parts.append("# Optional: the top-mass fit before and after compression (--mode analyse).")
        parts.append(render_section("analysis", _analysis_spec()(), commented=True))
        parts.append("")
    return "\n".join(parts)
