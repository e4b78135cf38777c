"""The CLI called with argv: every mode, and every bad input the issue lists."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from baler_ext.cli import main
from baler_ext.errors import ConfigError, InputDataError, ProjectError


def outputs(projects: Path, name: str, stage: str) -> list[Path]:
    d = projects / name / "output" / stage
    return sorted(p for p in d.glob("*") if p.is_file()) if d.exists() else []


def test_help_lists_every_mode(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for mode in ("new_project", "train", "compress", "decompress", "all"):
        assert f"  {mode} " in text


def test_help_does_not_import_torch():
    code = (
        "import sys; from baler_ext.cli import build_parser; build_parser().format_help(); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_python_m_entry_point():
    out = subprocess.run(
        [sys.executable, "-m", "baler_ext", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("baler_ext ")


def test_new_project_writes_every_key_and_refuses_overwrite(cli, tmp_path, caplog):
    projects = tmp_path / "projects"
    assert cli(projects, "fresh", "new_project") == 0
    cfg_text = (projects / "fresh" / "config.toml").read_text()
    for key in (
        "input",
        "columns",
        "passthrough",
        "latent_dim",
        "epochs",
        "early_stopping_patience",
        "validation_fraction",
        "mode",
    ):
        assert f"{key} =" in cfg_text
    assert (projects / "fresh" / "output" / "compressed").is_dir()
    before = cfg_text
    with caplog.at_level(logging.ERROR):
        assert cli(projects, "fresh", "new_project") == ProjectError.exit_code
    assert "exists already" in caplog.text
    assert (projects / "fresh" / "config.toml").read_text() == before


def test_all_modes_on_flat_parquet(cli, make_project, flat_parquet):
    projects, name = make_project(flat_parquet)
    assert cli(projects, name, "train") == 0
    assert (projects / name / "output" / "model" / "history.csv").is_file()
    assert cli(projects, name, "compress") == 0
    assert outputs(projects, name, "compressed")[0].suffix == ".baler"
    assert cli(projects, name, "decompress") == 0
    restored = pq.read_table(outputs(projects, name, "decompressed")[0])
    original = pq.read_table(flat_parquet)
    assert restored.schema == original.schema
    assert restored.column("event").equals(original.column("event"))
    assert restored.column("matched").equals(original.column("matched"))
    assert cli(projects, name, "all", "--set", "training.epochs=1") == 0


def test_set_overrides_reach_the_stage(cli, make_project, flat_parquet):
    projects, name = make_project(flat_parquet)
    assert (
        cli(
            projects,
            name,
            "train",
            "--set",
            'data.columns=["pt","mass"]',
            "--set",
            "model.latent_dim=1",
        )
        == 0
    )
    meta = (projects / name / "output" / "model" / "model.json").read_text()
    assert '"columns": [\n  "pt",\n  "mass"\n ]' in meta
    assert '"latent_dim": 1' in meta


@pytest.mark.parametrize(
    ("mode", "message"),
    [("compress", "--mode train' first"), ("decompress", "--mode compress' first")],
)
def test_stage_without_its_prerequisite_names_the_command(
    cli, make_project, flat_parquet, caplog, mode, message
):
    projects, name = make_project(flat_parquet)
    with caplog.at_level(logging.ERROR):
        assert cli(projects, name, mode) == ProjectError.exit_code
    assert message in caplog.text


def test_missing_project_says_how_to_create_it(cli, tmp_path, caplog):
    with caplog.at_level(logging.ERROR):
        assert cli(tmp_path, "nope", "train") == ProjectError.exit_code
    assert "--mode new_project" in caplog.text


def expect_error(
    cli: Callable[..., int],
    projects: Path,
    name: str,
    mode: str,
    code: int,
    fragment: str,
    caplog,
    *extra: str,
) -> None:
    with caplog.at_level(logging.ERROR):
        assert cli(projects, name, mode, *extra) == code
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "\n" not in errors[0]
    assert fragment in errors[0], errors[0]
    assert outputs(projects, name, "model") == []
    assert outputs(projects, name, "compressed") == []


def test_unknown_config_key_suggests_the_right_one(cli, make_project, flat_parquet, caplog):
    projects, name = make_project(flat_parquet, training={"epochz": 3})
    expect_error(
        cli, projects, name, "train", ConfigError.exit_code, "did you mean 'epochs'", caplog
    )


def test_wrong_config_type_names_key(cli, make_project, flat_parquet, caplog):
    projects, name = make_project(flat_parquet)
    expect_error(
        cli,
        projects,
        name,
        "train",
        ConfigError.exit_code,
        "'training.epochs' must be int",
        caplog,
        "--set",
        'training.epochs="many"',
    )


def test_missing_input_file(cli, make_project, tmp_path, caplog):
    projects, name = make_project(tmp_path / "absent.parquet")
    expect_error(cli, projects, name, "train", InputDataError.exit_code, "file not found", caplog)


def test_missing_column_suggests(cli, make_project, flat_parquet, caplog):
    projects, name = make_project(flat_parquet, data={"columns": ["pT", "eta"]})
    expect_error(
        cli, projects, name, "train", InputDataError.exit_code, "did you mean 'pt'", caplog
    )


def test_empty_selection(cli, make_project, flat_parquet, caplog):
    projects, name = make_project(flat_parquet, data={"columns": ["event", "matched"]})
    expect_error(
        cli, projects, name, "train", InputDataError.exit_code, "selects no float column", caplog
    )


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_and_inf_are_errors_by_default_and_droppable(cli, make_project, tmp_path, caplog, bad):
    x = np.linspace(1.0, 2.0, 500)
    y = x**2
    y[37] = bad
    path = tmp_path / "nan.parquet"
    pq.write_table(pa.table({"x": x, "y": y, "id": np.arange(500)}), path)
    projects, name = make_project(path)
    expect_error(
        cli, projects, name, "train", InputDataError.exit_code, 'data.nan_policy = "drop"', caplog
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert cli(projects, name, "all", "--set", 'data.nan_policy="drop"') == 0
    assert "dropped 1 rows" in caplog.text
    restored = pq.read_table(outputs(projects, name, "decompressed")[0])
    assert restored.num_rows == 499
    assert 37 not in restored.column("id").to_pylist()


def test_missing_tree(cli, make_project, shared_data, caplog):
    path = shared_data / "cms_hep_tutorial" / "qcd.root"
    projects, name = make_project(path, data={"tree": "Events"})
    expect_error(
        cli,
        projects,
        name,
        "train",
        InputDataError.exit_code,
        "TTrees in this file: events",
        caplog,
    )


def test_several_trees_need_a_choice(cli, make_project, shared_data, caplog):
    projects, name = make_project(shared_data / "uproot_cases" / "uproot-issue243-new.root")
    expect_error(
        cli, projects, name, "train", InputDataError.exit_code, "choose one with data.tree", caplog
    )


def test_histogram_where_a_tree_was_expected(cli, make_project, shared_data, caplog):
    path = shared_data / "uproot_cases" / "uproot-issue-750.root"
    projects, name = make_project(path, data={"tree": "h_Muon_pt"})
    expect_error(
        cli, projects, name, "train", InputDataError.exit_code, "is a TH1D, not a TTree", caplog
    )


def test_object_branches_must_be_excluded(cli, make_project, shared_data, caplog):
    path = shared_data / "uproot_cases" / "uproot-HZZ-objects.root"
    projects, name = make_project(path)
    expect_error(cli, projects, name, "train", InputDataError.exit_code, "TLorentzVector", caplog)


def test_constant_columns_are_stored_and_logged(cli, make_project, shared_data, caplog):
    path = shared_data / "uproot_cases" / "nanoAOD_2015_CMS_Open_Data_ttbar.root"
    projects, name = make_project(path, data={"columns": ["Jet_*"]})
    with caplog.at_level(logging.WARNING):
        assert cli(projects, name, "train") == 0
    assert "constant columns" in caplog.text
    meta = (projects / name / "output" / "model" / "normaliser.json").read_text()
    assert '"constants": {}' not in meta


def test_output_directory_and_input_protection(cli, make_project, flat_parquet, tmp_path, caplog):
    projects, name = make_project(flat_parquet)
    assert cli(projects, name, "train") == 0
    assert cli(projects, name, "compress") == 0
    original = flat_parquet.read_bytes()
    with caplog.at_level(logging.ERROR):
        code = cli(
            projects, name, "decompress", "--set", f'output.directory="{flat_parquet.parent}"'
        )
    assert code == ProjectError.exit_code
    assert "is an input file" in caplog.text
    assert flat_parquet.read_bytes() == original
    elsewhere = tmp_path / "restored"
    assert cli(projects, name, "decompress", "--set", f'output.directory="{elsewhere}"') == 0
    assert (elsewhere / "jets.parquet").is_file()


def test_retraining_keeps_earlier_files_decompressible(cli, make_project, flat_parquet):
    projects, name = make_project(flat_parquet)
    assert cli(projects, name, "train") == 0
    assert cli(projects, name, "compress") == 0
    assert cli(projects, name, "decompress") == 0
    first = outputs(projects, name, "decompressed")[0].read_bytes()
    assert cli(projects, name, "train", "--set", "training.seed=7") == 0  # a new model
    archive = projects / name / "output" / "model" / "archive"
    assert len(list(archive.iterdir())) == 1
    assert cli(projects, name, "decompress") == 0  # found by hash in the archive
    restored = pq.read_table(outputs(projects, name, "decompressed")[0])
    assert restored.equals(pq.read_table(pa.BufferReader(first)))


def test_non_root_bytes_read_as_root_give_one_line(cli, make_project, tmp_path, caplog):
    path = tmp_path / "notes.txt"
    path.write_text("not a ROOT file\n" * 100)
    projects, name = make_project(path, data={"format": "root"})
    expect_error(
        cli, projects, name, "train", InputDataError.exit_code, "not a readable ROOT file", caplog
    )
