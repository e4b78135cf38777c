"""``--mode export``: TorchScript encoder/decoder that reproduce the codec's latent and
reconstruction without baler_ext (issue 8)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from baler_ext.cli import main
from baler_ext.codec import modes
from baler_ext.config import load_config
from baler_ext.io.source import open_sources
from baler_ext.model_store import load_model
from baler_ext.project import Project


@pytest.mark.parametrize("model", ["sae", "sae_bn", "vae", "aae", "vqvae"])
def test_exported_files_reproduce_latent_and_reconstruction(make_project, flat_parquet, model):
    projects, name = make_project(
        flat_parquet, model={"name": model}, training={"epochs": 1, "max_rows": 1500}
    )
    assert main(["-q", "--projects-dir", str(projects), "-p", name, "--mode", "train"]) == 0
    assert main(["-q", "--projects-dir", str(projects), "-p", name, "--mode", "export"]) == 0
    project = Project(name, projects / name)
    out = project.dir("export")
    meta = json.loads((out / "export.json").read_text())
    encoder = torch.jit.load(str(out / "encoder.pt"))
    decoder = torch.jit.load(str(out / "decoder.pt"))

    cfg = load_config(project.config_path)
    values = open_sources(cfg)[0].read_values()[:700]
    trained = load_model(project.dir("model"))
    assert meta["columns"] == trained.normaliser.columns
    mode = modes.get_mode("latent")(trained, cfg.compression, torch.device("cpu"))
    z_ref = mode.autoencoder.latent(values)
    x_ref = mode.decode({"latent": z_ref}, len(values))
    with torch.no_grad():
        z = encoder(torch.from_numpy(values)).numpy()
        x_hat = decoder(torch.from_numpy(z_ref)).numpy()
    assert z.shape == (len(values), meta["latent_dim"])
    # same operations in the same order: equal up to float64 rounding of fused kernels
    np.testing.assert_allclose(z, z_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(x_hat, x_ref, rtol=1e-12, atol=1e-9)
    # a batch size other than the traced one
    with torch.no_grad():
        np.testing.assert_allclose(
            encoder(torch.from_numpy(values[:3])).numpy(), z_ref[:3], rtol=1e-12, atol=1e-12
        )


def test_export_without_model_says_what_to_run(make_project, flat_parquet, capsys):
    projects, name = make_project(flat_parquet)
    assert main(["--projects-dir", str(projects), "-p", name, "--mode", "export"]) != 0
    assert "--mode train" in capsys.readouterr().err
