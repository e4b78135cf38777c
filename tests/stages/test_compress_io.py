"""Compress writes the lossless passthrough at its own (fast) zstd level and reports sizes
from what it wrote, without reading the container back."""

from __future__ import annotations

import json

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


def headers_and_sizes(path):
    """The header and the section sizes (without the header's own, which holds the config)."""
    with ContainerReader(path) as reader:
        sizes = dict(reader.section_sizes())
        sizes.pop("preamble+index+trailer")
        return dict(reader.header), sizes


def test_digest_is_the_encoders_reconstruction_and_verify_finds_a_changed_decode(
    make_project, flat_parquet, monkeypatch
):
    """Compress digests the encoder's own reconstruction (no second decode); with
    ``compression.verify`` it also decodes, and the file is identical. A decode that
    differs from the encoder in one bit is refused under verify, with nothing written,
    and without verify decompress refuses the file it would give."""
    import numpy as np
    import pytest

    from baler_ext.codec.modes import BoundedMode
    from baler_ext.errors import ContainerError

    projects, name = make_project(
        flat_parquet,
        model={"hidden": [8], "latent_dim": 2},
        training={"epochs": 1},
        compression={"mode": "bounded"},
    )
    argv = ["-q", "--projects-dir", str(projects), "-p", name]
    assert main([*argv, "-m", "train"]) == 0
    project = Project.locate(name, projects)
    cfg = load_config(project.config_path)
    (plain,) = compress(project, cfg)
    first = headers_and_sizes(plain.path)
    (checked,) = compress(project, load_config(project.config_path, ["compression.verify=true"]))
    second = headers_and_sizes(checked.path)
    assert second[0].pop("compression").get("verify") is True  # 1.4: non-defaults only
    assert "verify" not in first[0].pop("compression")
    assert first[0].pop("compression_digest") != second[0].pop("compression_digest")
    assert first == second  # the same sections and chunk digests
    assert main([*argv, "-m", "decompress"]) == 0

    decode = BoundedMode.decode

    def nudged(self, *a, **k):
        out = decode(self, *a, **k)
        out[3, 0] = np.nextafter(out[3, 0], np.inf)
        return out

    monkeypatch.setattr(BoundedMode, "decode", nudged)
    plain.path.unlink()
    with pytest.raises(ContainerError, match=r"compression\.verify"):
        compress(project, load_config(project.config_path, ["compression.verify=true"]))
    assert not plain.path.exists()
    compress(project, cfg)  # the encoder's digest: decompress's changed decode is refused
    assert main([*argv, "-m", "decompress"]) == ContainerError.exit_code


def test_compression_settings_are_stored_as_non_defaults_and_a_digest_of_all():
    """Format 1.4 stores what differs from the defaults (shown by info) and a digest of
    every setting (compared by --resume); older files hold them whole."""
    from dataclasses import asdict

    from baler_ext.config import CompressionConfig
    from baler_ext.stages.compress import compression_entries, same_settings

    cfg = CompressionConfig(mode="bounded", zstd_level=5)
    entries = json.loads(json.dumps(compression_entries(cfg)))
    assert entries["compression"] == {"zstd_level": 5}
    assert same_settings(entries, cfg)
    assert not same_settings(entries, CompressionConfig(zstd_level=6))
    assert not same_settings(entries, CompressionConfig())
    plain = compression_entries(CompressionConfig())
    assert plain["compression"] == {}
    assert not same_settings(plain, CompressionConfig(dither=False))  # a default, changed
    old = {"compression": json.loads(json.dumps(asdict(cfg)))}  # a file before 1.4
    assert same_settings(old, cfg) and not same_settings(old, CompressionConfig())
