"""Commands that should answer at once do not import the heavy libraries, and reports
go to stdout.

Each check runs the CLI in a fresh interpreter (a subprocess) and reads that process's
``sys.modules`` after the command, so what the test process imported does not count.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from baler_ext.cli import main
from baler_ext.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "iminuit", "scipy", "matplotlib")

#: runs ``main(argv)`` and writes the exit code and the heavy modules loaded to a file
PROBE = """
import json, sys
from baler_ext.cli import main
out, argv = sys.argv[1], sys.argv[2:]
try:
    rc = main(argv)
except SystemExit as exc:
    rc = exc.code
heavy = sys.modules.keys() & set(HEAVY_MODULES.split(","))
with open(out, "w") as fh:
    json.dump({"rc": rc, "loaded": sorted(heavy)}, fh)
""".replace("HEAVY_MODULES", repr(",".join(HEAVY)))


def env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    }


def probe(tmp_path: Path, *argv: str) -> tuple[dict, subprocess.CompletedProcess]:
    out = tmp_path / "probe.json"
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), *argv],
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.is_file(), proc.stderr
    return json.loads(out.read_text()), proc


def run_cli(*argv: str, stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "baler_ext", *argv],
        env=env(),
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("argv", [["--help"], ["--version"]])
def test_help_and_version_import_nothing_heavy(tmp_path, argv):
    result, proc = probe(tmp_path, *argv)
    assert result["rc"] == 0, proc.stderr
    assert result["loaded"] == [], f"{argv} imported {result['loaded']}"


@pytest.mark.parametrize(
    "sections",
    [
        {"analysis": {"column": "mass"}},
        # checking evaluation.cuts imports the selection module alone, not the fitting
        # half of the analysis package (iminuit, scipy: 2.9 s before)
        {"evaluation": {"cuts": ["a > 0"]}},
    ],
    ids=["analysis", "cuts"],
)
def test_config_error_imports_nothing_heavy(tmp_path, make_project, flat_parquet, sections):
    projects, name = make_project(flat_parquet, **sections)
    result, proc = probe(
        tmp_path,
        "--projects-dir",
        str(projects),
        "-p",
        name,
        "-m",
        "train",
        "--set",
        "training.epochz=3",
    )
    assert result["rc"] == ConfigError.exit_code
    assert "did you mean 'epochs'" in proc.stderr
    assert result["loaded"] == [], f"a config error imported {result['loaded']}"


def test_bad_cut_is_a_config_error_that_imports_nothing_heavy(tmp_path, make_project, flat_parquet):
    projects, name = make_project(flat_parquet, evaluation={"cuts": ["a >> 0"]})
    result, proc = probe(tmp_path, "--projects-dir", str(projects), "-p", name, "-m", "train")
    assert result["rc"] == ConfigError.exit_code and "a >> 0" in proc.stderr
    assert result["loaded"] == [], f"a bad cut imported {result['loaded']}"


def test_bad_analysis_section_is_still_a_config_error_at_load(make_project, flat_parquet, caplog):
    """[analysis] is validated lazily only for info: train refuses a bad one up front."""
    projects, name = make_project(flat_parquet, analysis={"peak": "gaus"})
    with caplog.at_level(logging.ERROR):
        rc = main(["--projects-dir", str(projects), "-p", name, "-m", "train"])
    assert rc == ConfigError.exit_code
    assert "analysis.peak = 'gaus' is unknown" in caplog.text
    assert not (projects / name / "output" / "model" / "model.json").exists()


@pytest.fixture
def compressed_project(make_project, flat_parquet, caplog):
    """A trained and compressed project (made in this process, where torch is loaded)."""
    projects, name = make_project(
        flat_parquet,
        model={"hidden": [8], "latent_dim": 2},
        training={"epochs": 1},
        compression={"mode": "bounded"},
        analysis={"column": "mass", "fit_range": [120.0, 230.0]},
    )
    from baler_ext import console

    console._seen.clear()  # facts logged by earlier tests of this process
    with caplog.at_level(logging.INFO, logger="baler_ext"):
        for mode in ("train", "compress"):
            assert main(["--projects-dir", str(projects), "-p", name, "-m", mode]) == 0
    return projects, name, caplog.records


def test_info_imports_nothing_heavy_and_reports_on_stdout(tmp_path, compressed_project):
    projects, name, _ = compressed_project
    args = ("--projects-dir", str(projects), "-p", name, "-m", "info")
    result, proc = probe(tmp_path, *args)
    assert result["rc"] == 0, proc.stderr
    assert result["loaded"] == [], f"--mode info imported {result['loaded']}"

    report = tmp_path / "report.txt"
    with report.open("w") as fh:
        proc = run_cli(*args, stdout=fh)
    assert proc.returncode == 0, proc.stderr
    text = report.read_text()
    assert "jets.baler: bounded mode, 3000 rows" in text and "ratio payload_vs_float64" in text
    assert "payload_vs_float64" not in proc.stderr  # the report is not duplicated as logs

    quiet = run_cli(*args, "-q")
    assert quiet.returncode == 0 and quiet.stdout == text
    assert quiet.stderr == ""


def test_info_takes_the_decoder_size_from_the_header(compressed_project):
    """The torch-free decoder size is what decoding this file needs: here (the learned
    path, no latent) the learned probability model, not the autoencoder's weights."""
    import json

    from baler_ext.stages.info import describe

    projects, name, _ = compressed_project
    d = describe(projects / name / "output" / "compressed" / "jets.baler")
    meta = json.loads((projects / name / "output" / "model" / "model.json").read_text())
    assert d["learned"] is not None and d["latent_chunks"] == 0
    assert d["decoder_bytes"] == meta["rate_model_bytes"] > 0


def test_a_file_fact_is_logged_once_per_process(compressed_project):
    """train and compress both open the input (``--mode all`` does both in one process);
    the column plan is logged once."""
    *_, records = compressed_project
    lines = [r.getMessage() for r in records if "carried losslessly" in r.getMessage()]
    assert len(lines) == 1, lines
    assert lines[0].endswith("event, matched")


def test_deferred_analysis_is_validated_on_first_use(tmp_path):
    from baler_ext.config import load_config

    path = tmp_path / "config.toml"
    path.write_text('[analysis]\ncolumn = "mass"\nbins = 2\n')
    cfg = load_config(path, defer_analysis=True)  # what --mode info does
    with pytest.raises(ConfigError, match=r"analysis\.bins = 2 is too few"):
        _ = cfg.analysis
    with pytest.raises(ConfigError, match=r"analysis\.bins = 2 is too few"):
        load_config(path)
    path.write_text('[analysis]\ncolumn = "mass"\n')
    assert load_config(path, defer_analysis=True).analysis.column == "mass"
