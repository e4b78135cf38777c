"""Compress writes the lossless passthrough at its own (fast) zstd level and reports sizes
from what it wrote, without reading the container back."""

from __future__ import annotations

from baler_ext.cli import main
from baler_ext.codec.container import ContainerReader
from baler_ext.config import load_config
from baler_ext.project import Project
from baler_ext.stages.compress import compress
from baler_ext.stages.info import describe


def test_passthrough_level_changes_only_the_passthrough(make_project, flat_parquet):
    projects, name = make_project(
        flat_parquet,
        model={"hidden": [8], "latent_dim": 2},
        training={"epochs": 1},
        compression={"mode": "bounded"},
    )
    assert main(["-q", "--projects-dir", str(projects), "-p", name, "-m", "train"]) == 0
    project = Project.locate(name, projects)
    groups = {}
    for level in (1, 19):
        cfg = load_config(project.config_path, [f"compression.passthrough_zstd_level={level}"])
        (result,) = compress(project, cfg)
        # the sizes the writer reported are the container's, section by section
        with ContainerReader(result.path) as reader:
            assert reader.section_sizes() == result.sizes
        assert result.total_bytes == result.path.stat().st_size
        groups[level] = describe(result.path)["bytes_by_section"]
    assert groups[19]["passthrough"] < groups[1]["passthrough"]
    for group in ("residuals", "prediction", "other"):
        assert groups[1].get(group) == groups[19].get(group), group
