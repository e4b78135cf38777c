"""Helpers shared by the benchmark scripts: data paths, operating points, projects, tables.

Used by ``bench_codec.py`` (issue 4) and ``run.py`` (issue 7). Nothing here imports torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: the shared HEP data; BALER_EXT_SHARED_DATA overrides it, as in tests/conftest.py
SHARED = Path(os.environ.get("BALER_EXT_SHARED_DATA", ROOT.parent / "shared" / "data"))
DATA = SHARED / "pythia_ttbar" / "ttbar_boosted_jets.parquet"
CMS_GLOB = "cms_hep_tutorial/*.root"
FRACS = [
    "charged_frac",
    "photon_frac",
    "neutral_hadron_frac",
    "lead_pt_frac",
    "girth",
    "ptd",
    "tau1",
    "tau2",
    "tau3",
]
CMS_COLUMNS = ["Jet_Px", "Jet_Py", "Jet_Pz", "Jet_E", "Jet_btag"]

# column classes of the rate-distortion plots
CLASSES = ("momenta", "angles", "dimensionless")
_CLASS_OF = {
    **{
        c: "momenta"
        for c in ("pt", "mass", "energy", "px", "py", "pz", "Jet_Px", "Jet_Py", "Jet_Pz", "Jet_E")
    },
    "eta": "angles",
    "phi": "angles",
}


def column_class(name: str) -> str:
    """``momenta`` (GeV), ``angles`` (eta, phi) or ``dimensionless`` (fractions, substructure)."""
    return _CLASS_OF.get(name, "dimensionless")


def operating_point(scale: float) -> dict[str, dict[str, float]]:
    """P1 (scale 1) or P2 (scale 0.1) of the boosted-top jets as a bounds table."""
    b: dict[str, dict[str, float]] = {"default": {"abs": 1e-3 * scale}}
    for c in ("pt", "mass", "energy"):
        b[c] = {"rel": 1e-2 * scale}
    for c in ("eta", "phi"):
        b[c] = {"abs": 1e-3 * scale}
    for c in ("px", "py", "pz"):
        b[c] = {"abs": 1.0 * scale}
    for c in FRACS:
        b[c] = {"abs": 1e-3 * scale}
    return b


def cms_operating_point(scale: float) -> dict[str, dict[str, float]]:
    """The CMS-tutorial analogue of P1/P2: rel 1e-2 on E, abs 1 GeV on momenta, 1e-3 on btag."""
    return {
        "default": {"abs": 1e-3 * scale},
        "Jet_E": {"rel": 1e-2 * scale},
        "Jet_Px": {"abs": 1.0 * scale},
        "Jet_Py": {"abs": 1.0 * scale},
        "Jet_Pz": {"abs": 1.0 * scale},
        "Jet_btag": {"abs": 1e-3 * scale},
    }


def bound_of(bounds: dict[str, dict[str, float]], column: str) -> tuple[str, float]:
    """``(kind, value)`` of ``column`` in a bounds table (falls back to ``default``)."""
    ((kind, value),) = bounds.get(column, bounds["default"]).items()
    return kind, float(value)


def write_project_config(project_dir: Path, sections: dict[str, dict]) -> Path:
    """Write ``project_dir/config.toml`` from ``{section: {key: value}}``; return its path."""
    from baler_ext.config import toml_value

    project_dir.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    for sec, table in sections.items():
        lines += [f"[{sec}]", *(f"{k} = {toml_value(v)}" for k, v in table.items()), ""]
    path = project_dir / "config.toml"
    path.write_text("\n".join(lines))
    return path


def copy_model(src_model_dir: Path, project_output: Path) -> None:
    """Copy a trained ``output/model`` folder into another project (share one model)."""
    dst = project_output / "model"
    dst.mkdir(parents=True, exist_ok=True)
    for f in src_model_dir.iterdir():
        if f.is_file():
            (dst / f.name).write_bytes(f.read_bytes())


@dataclass
class Table:
    """The float columns of one benchmark sample: values as float64, dtypes as stored."""

    names: list[str]
    values: np.ndarray  # (rows, columns) float64
    dtypes: list[str]  # "float64" | "float32" per column

    @property
    def rows(self) -> int:
        return int(self.values.shape[0])

    @property
    def raw_float64(self) -> int:
        return self.values.size * 8

    @property
    def raw_float32(self) -> int:
        return self.values.size * 4

    def column(self, name: str) -> np.ndarray:
        return self.values[:, self.names.index(name)]

    def as_stored(self, values: np.ndarray) -> np.ndarray:
        """``values`` rounded to each column's stored dtype, returned as float64."""
        out = np.array(values, dtype=np.float64, copy=True)
        for j, dt in enumerate(self.dtypes):
            if dt == "float32":
                out[:, j] = out[:, j].astype(np.float32).astype(np.float64)
        return out


def read_table(path: Path, names: list[str] | None = None) -> Table:
    """The float columns of a Parquet file as a :class:`Table`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pq.read_table(path)
    names = names or [f.name for f in t.schema if pa.types.is_floating(f.type)]
    cols = [t.column(c).to_numpy() for c in names]
    dtypes = ["float32" if c.dtype == np.float32 else "float64" for c in cols]
    values = np.stack([c.astype(np.float64) for c in cols], axis=1)
    return Table(names, values, dtypes)


def write_table(table: Table, values: np.ndarray, path: Path) -> None:
    """Write ``values`` (rows x columns) as a Parquet file with ``table``'s names and dtypes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = {
        n: pa.array(values[:, j].astype(dt))
        for j, (n, dt) in enumerate(zip(table.names, table.dtypes, strict=True))
    }
    pq.write_table(pa.table(arrays), path)


def bound_limits(table: Table, bounds: dict[str, dict[str, float]]) -> np.ndarray:
    """Per-value allowed absolute error, same shape as ``table.values``."""
    lim = np.empty_like(table.values)
    for j, c in enumerate(table.names):
        kind, v = bound_of(bounds, c)
        lim[:, j] = v if kind == "abs" else v * np.abs(table.values[:, j])
    return lim


def bounds_met(table: Table, restored: np.ndarray, bounds: dict[str, dict[str, float]]) -> bool:
    """Every value of ``restored`` (after rounding to the stored dtype) within its bound."""
    err = np.abs(table.as_stored(restored) - table.values)
    return bool(np.all(err <= bound_limits(table, bounds)))


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB: ``VmHWM`` of ``/proc/self/status``.

    Not ``ru_maxrss``: on Linux that keeps the parent's high-water mark across ``exec``, so
    a small worker started by a big parent would report the parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
