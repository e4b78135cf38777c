"""Generate boosted hadronic tt̄ large-R jets with Pythia 8 + FastJet and write them as Parquet.

This is the generator of the example project's data (``projects/example/data/ttbar_jets.parquet``).
It mirrors the shared reference sample ``../shared/data/pythia_ttbar/ttbar_boosted_jets.parquet``
(seed 101): same physics settings, same 22 columns, dtypes and definitions; only the seed and the
number of events differ.

Physics settings
----------------
* Pythia 8.318, pp at 13 TeV, ``Top:gg2ttbar = on`` and ``Top:qqbar2ttbar = on``, both W bosons
  forced to hadrons (``24:onMode = off``, ``24:onIfAny = 1 2 3 4 5``),
  ``PhaseSpace:pTHatMin = 450``, ``Random:setSeed = on``, ``Random:seed = SEED``; multiparton
  interactions, showers and hadronisation on (Pythia defaults, Monash tune); output silenced.
* FastJet anti-kT, R = 0.8, E-scheme, on all visible final-state particles (everything with a
  positive Pythia status except neutrinos, ``|id|`` 12, 14, 16) with ``|η| < 4``.
* Per event the two leading jets (in pT) are taken and those with pT > 337.5 GeV and
  ``|η| < 2.4`` kept (``jet_index`` 0, 1 in decreasing pT among the kept ones; a leading jet
  outside ``|η| < 2.4`` is not replaced by the third jet). Events without a selected jet (a
  few per mille) are dropped: ``event`` numbers the kept events 0..N-1 without gaps, and
  ``--events N`` asks for N kept events, as in the shared sample (its "40,000 events" are
  40,000 events with jets).

Columns (float64 unless noted; GeV and rad)
-------------------------------------------
``event`` (int32), ``jet_index`` (int32), ``pt``, ``eta`` (pseudorapidity), ``phi`` (in
[-π, π)), ``mass``, ``energy``, ``px``, ``py``, ``pz`` (the FastJet jet four-momentum; ``mass`` is
``sqrt(max(m², 0))``), ``n_constituents`` (int32), ``n_charged`` (int32), ``charged_frac``,
``photon_frac``, ``neutral_hadron_frac`` (the energies of the charged constituents, of the
photons and of the remaining neutral constituents, each divided by the jet energy; they sum to 1
up to rounding), ``lead_pt_frac`` (leading constituent pT / jet pT), ``girth``
(Σ pT_i ΔR_i / pT_jet), ``ptd`` (sqrt(Σ pT_i²) / Σ pT_i), ``tau1``, ``tau2``, ``tau3``,
``top_matched`` (int32).

Substructure distances ΔR are in the (rapidity, φ) plane, as FastJet's ``delta_R``; ΔR_i in
``girth`` is measured to the jet axis. The N-subjettiness values (β = 1, R0 = 0.8) are
normalised by the *jet* pT, which is the definition of the shared reference sample (checked: a
seed-101 run reproduces its τ_N to 1e-15, while the fjcontrib normalisation Σ_i pT_i differs
by up to 0.03)::

    τ_N = Σ_i pT_i min_k ΔR_ik / (pT_jet · R0)

fjcontrib's normalised τ_N divides by Σ_i pT_i · R0 instead; since Σ_i pT_i ≥ pT_jet, the
values here are larger than fjcontrib's by the factor Σ_i pT_i / pT_jet (typically 1–3 %).
The N axes are the exclusive-kT subjets of the jet's constituents (kT algorithm with
``JetDefinition.max_allowable_R``, E-scheme, ``exclusive_jets(N)``, as fjcontrib's
``ExclusiveJetAxes``); τ_N = 0 when the jet has fewer than N constituents. The ratios
τ2/τ1 and τ3/τ2 do not depend on the normalisation.
``top_matched`` is 1 when a top quark (the last copy of ``|id| == 6`` in the event record; both
tops decay hadronically here) lies within ΔR < 0.8 of the jet axis, with this ΔR in the
(pseudorapidity, φ) plane.

Install and run
---------------
::

    pip install -e ".[generate]"        # the extra: pythia8mc==8.318.0 + fastjet
    python workflows/generate_ttbar.py --events 10500 --seed 2026 \\
        --out projects/example/data/ttbar_jets.parquet

``pythia8mc`` builds from source where no wheel fits (about 40 minutes on two busy cores).
Generation is fast: one core makes 110–170 events a second (Pythia dominates), so the
10,500-event example sample (20,518 jets, 1.95 jets per event, 3.4 MB) takes about 1.5 minutes
and the 40,000-event shared sample about 5 minutes. The output depends only on ``--seed`` and
``--events``: ``--seed 101 --events 40000`` reproduces the shared sample's 78,238 jets column for
column (integers and kinematics exactly, derived floats to ≤ 1e-13). The Parquet file is written
with pyarrow (zstd, explicit schema, one row group, settings and package versions as JSON under
the schema metadata key ``baler_ext.generator``) under a temporary name and renamed into place,
so an interrupted run leaves nothing half-written. Progress is reported through ``logging``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("generate_ttbar")

#: Pythia settings, in the order they are read (the seed is added by :func:`make_pythia`).
PYTHIA_SETTINGS: tuple[str, ...] = (
    "Beams:idA = 2212",
    "Beams:idB = 2212",
    "Beams:eCM = 13000.",
    "Top:gg2ttbar = on",
    "Top:qqbar2ttbar = on",
    "24:onMode = off",
    "24:onIfAny = 1 2 3 4 5",
    "PhaseSpace:pTHatMin = 450.",
    "PartonLevel:MPI = on",
    "HadronLevel:all = on",
    "Random:setSeed = on",
    "Print:quiet = on",
    "Next:numberCount = 0",
    "Next:numberShowInfo = 0",
    "Next:numberShowProcess = 0",
    "Next:numberShowEvent = 0",
)

NEUTRINO_IDS = (12, 14, 16)
PARTICLE_ETA_MAX = 4.0
JET_R = 0.8
JET_PT_MIN = 337.5
JET_ETA_MAX = 2.4
N_JETS_MAX = 2
TOP_MATCH_DR = 0.8
TAU_R0 = 0.8
TAU_N = (1, 2, 3)
PHOTON_ID = 22
TOP_ID = 6

#: Output columns and their numpy dtypes, in file order (the shared sample's schema).
COLUMNS: dict[str, type] = {
    "event": np.int32,
    "jet_index": np.int32,
    "pt": np.float64,
    "eta": np.float64,
    "phi": np.float64,
    "mass": np.float64,
    "energy": np.float64,
    "px": np.float64,
    "py": np.float64,
    "pz": np.float64,
    "n_constituents": np.int32,
    "n_charged": np.int32,
    "charged_frac": np.float64,
    "photon_frac": np.float64,
    "neutral_hadron_frac": np.float64,
    "lead_pt_frac": np.float64,
    "girth": np.float64,
    "ptd": np.float64,
    "tau1": np.float64,
    "tau2": np.float64,
    "tau3": np.float64,
    "top_matched": np.int32,
}


# --------------------------------------------------------------------------- imports


def _import_pythia() -> Any:
    """Return the Pythia 8 Python module (``pythia8mc`` from PyPI, or ``pythia8`` elsewhere)."""
    try:
        import pythia8mc as pythia8
    except ImportError:
        try:
            import pythia8
        except ImportError as exc:
            raise ImportError(
                'Pythia 8 is not installed: run `pip install -e ".[generate]"` '
                "(pythia8mc==8.318.0 and fastjet)"
            ) from exc
    return pythia8


def _import_fastjet() -> Any:
    try:
        import fastjet
    except ImportError as exc:
        raise ImportError(
            'FastJet is not installed: run `pip install -e ".[generate]"` '
            "(pythia8mc==8.318.0 and fastjet)"
        ) from exc
    return fastjet


# --------------------------------------------------------------------------- kinematics


def delta_phi(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """Azimuthal difference wrapped into [-π, π)."""
    return np.mod(np.asarray(a) - np.asarray(b) + math.pi, 2.0 * math.pi) - math.pi


def rapidity(e: np.ndarray, pz: np.ndarray) -> np.ndarray:
    """Rapidity y = ½ ln((E + pz) / (E − pz)) of particles with E > |pz|."""
    return 0.5 * np.log((e + pz) / (e - pz))


def delta_r(y1: np.ndarray, phi1: np.ndarray, y2: Any, phi2: Any) -> np.ndarray:
    """ΔR = sqrt(Δy² + Δφ²), broadcasting like numpy."""
    return np.hypot(np.asarray(y1) - np.asarray(y2), delta_phi(phi1, phi2))


# --------------------------------------------------------------------------- Pythia


def make_pythia(seed: int) -> Any:
    """Configure and initialise a quiet Pythia instance for boosted hadronic tt̄."""
    pythia8 = _import_pythia()
    pythia = pythia8.Pythia("", False)  # default XML directory, no banner
    for setting in (*PYTHIA_SETTINGS, f"Random:seed = {seed}"):
        if not pythia.readString(setting):
            raise RuntimeError(f"Pythia rejected the setting {setting!r}")
    if not pythia.init():
        raise RuntimeError("Pythia initialisation failed")
    return pythia


class ChargeTable:
    """Memoised particle charges from Pythia's particle data table (vectorised lookup)."""

    def __init__(self, particle_data: Any) -> None:
        self._pd = particle_data
        self._cache: dict[int, float] = {}

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        uniq, inverse = np.unique(ids, return_inverse=True)
        charges = np.empty(len(uniq))
        for k, pid in enumerate(uniq.tolist()):
            if pid not in self._cache:
                self._cache[pid] = float(self._pd.charge(pid))
            charges[k] = self._cache[pid]
        return charges[inverse]


def last_top_copies(ids: np.ndarray, d1: np.ndarray, d2: np.ndarray) -> np.ndarray:
    """Indices of the last copies of ``|id| == 6`` in one event record.

    A top is a copy (not the last) when one of its daughters ``d1..max(d1, d2)`` is a top of
    the same id, as in ``Pythia8::Event::iBotCopyId``.
    """
    last = []
    for i in np.flatnonzero(np.abs(ids) == TOP_ID).tolist():
        first, second = int(d1[i]), int(d2[i])
        daughters = ids[first : max(first, second) + 1] if first > 0 else ids[:0]
        if not np.any(daughters == ids[i]):
            last.append(i)
    return np.asarray(last, dtype=np.int64)


# --------------------------------------------------------------------------- jets


def n_subjettiness(
    fastjet: Any,
    constituents: list[Any],
    pt: np.ndarray,
    y: np.ndarray,
    phi: np.ndarray,
    jet_pt: float,
) -> list[float]:
    """τ_1, τ_2, τ_3 (β = 1, R0 = 0.8, normalised by ``jet_pt · R0``), exclusive-kT axes."""
    taus = [0.0] * len(TAU_N)
    n_max = max(n for n in TAU_N if n <= len(constituents)) if constituents else 0
    if n_max == 0:
        return taus
    kt_def = fastjet.JetDefinition(fastjet.kt_algorithm, fastjet.JetDefinition.max_allowable_R)
    cs = fastjet.ClusterSequence(constituents, kt_def)
    norm = jet_pt * TAU_R0
    for k, n in enumerate(TAU_N):
        if n > n_max:
            break
        axes = cs.exclusive_jets(n)
        ax_y = np.array([a.rap() for a in axes])
        ax_phi = np.array([a.phi() for a in axes])
        dr = delta_r(y[:, None], phi[:, None], ax_y[None, :], ax_phi[None, :])
        taus[k] = float(np.sum(pt * dr.min(axis=1)) / norm)
    return taus


def jet_row(
    fastjet: Any,
    jet: Any,
    particles: dict[str, np.ndarray],
    tops_eta: np.ndarray,
    tops_phi: np.ndarray,
) -> dict[str, float | int]:
    """All columns except ``event`` and ``jet_index`` for one jet."""
    constituents = list(jet.constituents())
    idx = np.array([c.user_index() for c in constituents], dtype=np.int64)
    pt = particles["pt"][idx]
    y = particles["y"][idx]
    phi = particles["phi"][idx]
    e = particles["e"][idx]
    charge = particles["charge"][idx]
    pid = particles["id"][idx]

    jet_pt, jet_e, jet_y, jet_phi = jet.pt(), jet.e(), jet.rap(), jet.phi_std()
    charged = charge != 0
    photon = pid == PHOTON_ID
    neutral_hadron = ~charged & ~photon
    dr_axis = delta_r(y, phi, jet_y, jet_phi)
    tau1, tau2, tau3 = n_subjettiness(fastjet, constituents, pt, y, phi, jet_pt)
    # Truth matching in (η, φ), unlike the substructure (y, φ): the shared sample's definition.
    matched = bool(len(tops_eta)) and bool(
        np.any(delta_r(tops_eta, tops_phi, jet.eta(), jet_phi) < TOP_MATCH_DR)
    )
    return {
        "pt": jet_pt,
        "eta": jet.eta(),
        "phi": jet_phi,
        "mass": math.sqrt(max(jet.m2(), 0.0)),
        "energy": jet_e,
        "px": jet.px(),
        "py": jet.py(),
        "pz": jet.pz(),
        "n_constituents": len(idx),
        "n_charged": int(charged.sum()),
        "charged_frac": float(e[charged].sum() / jet_e),
        "photon_frac": float(e[photon].sum() / jet_e),
        "neutral_hadron_frac": float(e[neutral_hadron].sum() / jet_e),
        "lead_pt_frac": float(pt.max() / jet_pt),
        "girth": float(np.sum(pt * dr_axis) / jet_pt),
        "ptd": float(math.sqrt(np.sum(pt * pt)) / pt.sum()),
        "tau1": tau1,
        "tau2": tau2,
        "tau3": tau3,
        "top_matched": int(matched),
    }


def event_jets(fastjet: Any, particles: dict[str, np.ndarray], tops: dict[str, np.ndarray]):
    """Cluster one event's visible particles and return the rows of its (≤ 2) selected jets."""
    jet_def = fastjet.JetDefinition(fastjet.antikt_algorithm, JET_R)
    pseudojets = []
    for i, (px, py, pz, e) in enumerate(
        zip(
            particles["px"].tolist(),
            particles["py"].tolist(),
            particles["pz"].tolist(),
            particles["e"].tolist(),
            strict=True,
        )
    ):
        pj = fastjet.PseudoJet(px, py, pz, e)
        pj.set_user_index(i)
        pseudojets.append(pj)
    cs = fastjet.ClusterSequence(pseudojets, jet_def)
    jets = fastjet.sorted_by_pt(cs.inclusive_jets(JET_PT_MIN))
    # The two leading jets first, then the |η| cut (a leading jet at |η| > 2.4 is not replaced
    # by the third one); jet_index counts the jets that pass.
    selected = [j for j in jets[:N_JETS_MAX] if abs(j.eta()) < JET_ETA_MAX]
    rows = [jet_row(fastjet, jet, particles, tops["eta"], tops["phi"]) for jet in selected]
    del cs  # the jets' constituents() need the sequence alive until here
    return rows


def split_batch(batch: Any, charges: ChargeTable):
    """Yield per-event (visible particles, last top copies) numpy arrays from a Pythia batch."""
    import awkward as ak

    prt = batch["prt"]
    counts = ak.to_numpy(ak.num(prt, axis=1)).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    flat = {
        "id": ak.to_numpy(ak.flatten(prt["id"])),
        "status": ak.to_numpy(ak.flatten(prt["status"])),
        "d1": ak.to_numpy(ak.flatten(prt["daughter1"])),
        "d2": ak.to_numpy(ak.flatten(prt["daughter2"])),
        "px": ak.to_numpy(ak.flatten(prt["p"]["px"])).astype(np.float64),
        "py": ak.to_numpy(ak.flatten(prt["p"]["py"])).astype(np.float64),
        "pz": ak.to_numpy(ak.flatten(prt["p"]["pz"])).astype(np.float64),
        "e": ak.to_numpy(ak.flatten(prt["p"]["e"])).astype(np.float64),
    }
    pt_all = np.hypot(flat["px"], flat["py"])
    with np.errstate(divide="ignore", invalid="ignore"):
        eta_all = np.arcsinh(flat["pz"] / pt_all)
    visible = (
        (flat["status"] > 0)
        & ~np.isin(np.abs(flat["id"]), NEUTRINO_IDS)
        & (pt_all > 0)
        & (np.abs(eta_all) < PARTICLE_ETA_MAX)
    )
    for start, stop in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True):
        sl = slice(start, stop)
        keep = np.flatnonzero(visible[sl]) + start
        particles = {k: flat[k][keep] for k in ("id", "px", "py", "pz", "e")}
        particles["pt"] = pt_all[keep]
        particles["y"] = rapidity(particles["e"], particles["pz"])
        particles["phi"] = np.arctan2(particles["py"], particles["px"])
        particles["charge"] = charges(particles["id"])
        tops_idx = last_top_copies(flat["id"][sl], flat["d1"][sl], flat["d2"][sl]) + start
        tops = {
            "eta": eta_all[tops_idx],
            "phi": np.arctan2(flat["py"][tops_idx], flat["px"][tops_idx]),
        }
        yield particles, tops


# --------------------------------------------------------------------------- driver


def generate(
    n_events: int, seed: int, batch_size: int = 100, log_every: int = 500
) -> tuple[dict[str, np.ndarray], int]:
    """Generate until ``n_events`` events have at least one selected jet.

    Returns the columns as a dict of numpy arrays and the number of events Pythia generated
    (including those without a selected jet, which leave no row and take no ``event`` id).
    """
    fastjet = _import_fastjet()
    pythia = make_pythia(seed)
    charges = ChargeTable(pythia.particleData)
    rows: dict[str, list] = {name: [] for name in COLUMNS}
    n_kept, n_generated, n_jets, next_log = 0, 0, 0, log_every
    t0 = time.monotonic()
    while n_kept < n_events:
        # Never generate past the last event needed, so the output depends only on the seed.
        want = min(batch_size, n_events - n_kept)
        batch = pythia.nextBatch(want, "skip")
        if batch is None or len(batch) == 0:
            log.warning("Pythia returned no event in a batch of %d tries; retrying", want)
            continue
        for particles, tops in split_batch(batch, charges):
            n_generated += 1
            jets = event_jets(fastjet, particles, tops)
            if not jets:
                continue
            for jet_index, row in enumerate(jets):
                rows["event"].append(n_kept)
                rows["jet_index"].append(jet_index)
                for name, value in row.items():
                    rows[name].append(value)
            n_jets += len(jets)
            n_kept += 1
        if n_kept >= next_log or n_kept >= n_events:
            elapsed = time.monotonic() - t0
            rate = n_kept / elapsed
            log.info(
                "%d/%d events with jets (%d generated), %d jets, %.1f events/s, ETA %.0f s",
                n_kept,
                n_events,
                n_generated,
                n_jets,
                rate,
                (n_events - n_kept) / rate,
            )
            next_log = (n_kept // log_every + 1) * log_every
    log.info(
        "Kept %d of %d generated events (%d jets) in %.0f s; Pythia cross section %.4g mb",
        n_kept,
        n_generated,
        n_jets,
        time.monotonic() - t0,
        pythia.infoPython().sigmaGen(),
    )
    columns = {name: np.asarray(values, dtype=COLUMNS[name]) for name, values in rows.items()}
    return columns, n_generated


def write_parquet(
    columns: dict[str, np.ndarray],
    out: Path,
    metadata: dict[str, Any],
    zstd_level: int | None = None,
) -> None:
    """Write ``columns`` with the explicit schema, zstd-compressed, atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [(name, pa.from_numpy_dtype(np.dtype(dtype))) for name, dtype in COLUMNS.items()],
        metadata={"baler_ext.generator": json.dumps(metadata, sort_keys=True)},
    )
    table = pa.Table.from_arrays(
        [pa.array(columns[name], type=schema.field(name).type) for name in COLUMNS],
        schema=schema,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        pq.write_table(
            table,
            tmp,
            compression="zstd",
            compression_level=zstd_level,
            row_group_size=max(table.num_rows, 1),
        )
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for dist in ("pythia8mc", "fastjet", "numpy", "pyarrow", "awkward"):
        try:
            found[dist] = version(dist)
        except PackageNotFoundError:
            continue
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=(
            "Generate boosted hadronic ttbar events (Pythia 8, 13 TeV, pTHatMin 450 GeV), "
            "cluster anti-kT R=0.8 jets (FastJet) and write one row per selected jet "
            "(<= 2 per event, pT > 337.5 GeV, |eta| < 2.4) to Parquet."
        )
    )
    parser.add_argument(
        "--events",
        type=int,
        default=10_500,
        help="events with at least one selected jet to produce (event ids 0..N-1)",
    )
    parser.add_argument("--seed", type=int, default=2026, help="Pythia random seed")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("projects/example/data/ttbar_jets.parquet"),
        help="output Parquet file (written atomically)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=100, help="events per Pythia nextBatch call"
    )
    parser.add_argument(
        "--zstd-level", type=int, default=None, help="zstd level (default: pyarrow's)"
    )
    parser.add_argument("--log-every", type=int, default=500, help="progress interval (events)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if min(args.events, args.batch_size, args.log_every) < 1:
        log.error("--events, --batch-size and --log-every must be >= 1")
        return 2
    if not 0 <= args.seed <= 900_000_000:
        log.error("--seed must be in [0, 900000000] (Pythia's range)")
        return 2
    try:
        _import_pythia()
        _import_fastjet()
    except ImportError as exc:
        log.error("%s", exc)
        return 2
    log.info("Generating %d events with seed %d -> %s", args.events, args.seed, args.out)
    t0 = time.monotonic()
    columns, n_generated = generate(args.events, args.seed, args.batch_size, args.log_every)
    metadata = {
        "generator": "workflows/generate_ttbar.py",
        "events": args.events,
        "events_generated": n_generated,
        "seed": args.seed,
        "pythia_settings": [*PYTHIA_SETTINGS, f"Random:seed = {args.seed}"],
        "jets": f"anti-kT R={JET_R}, particles |eta|<{PARTICLE_ETA_MAX}, "
        f"<= {N_JETS_MAX} jets with pT>{JET_PT_MIN} GeV and |eta|<{JET_ETA_MAX}",
        "versions": _versions(),
    }
    write_parquet(columns, args.out, metadata, args.zstd_level)
    log.info(
        "Wrote %d jets to %s (%.2f MB) in %.0f s",
        len(columns["event"]),
        args.out,
        args.out.stat().st_size / 1e6,
        time.monotonic() - t0,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
