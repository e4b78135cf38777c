"""Config parsing, validation messages, overrides and the generated reference."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from baler_ext.config import (
    Config,
    apply_overrides,
    config_from_dict,
    load_config,
    parse_override,
    render_default_config,
    to_dict,
)
from baler_ext.config_reference import render_config_reference
from baler_ext.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_default_config_file_round_trips_to_the_defaults():
    raw = tomllib.loads(render_default_config())
    cfg = config_from_dict(raw, "default")
    assert to_dict(cfg) == to_dict(Config())


def test_unknown_section_and_key_suggest():
    with pytest.raises(ConfigError, match=r"unknown section \[trainig\].*did you mean 'training'"):
        config_from_dict({"trainig": {}}, "f.toml")
    with pytest.raises(ConfigError, match=r"f.toml: unknown key 'model.latentdim'.*latent_dim"):
        config_from_dict({"model": {"latentdim": 3}}, "f.toml")


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"training": {"epochs": 1.5}}, "'training.epochs' must be int"),
        ({"training": {"learning_rate": "fast"}}, "'training.learning_rate' must be float"),
        ({"training": {"validation_fraction": 1.0}}, "between 0 and 1"),
        ({"data": {"nan_policy": "ignore"}}, "not one of error, drop"),
        ({"model": {"dtype": "float16"}}, "not one of float64, float32"),
        ({"model": {"hidden": [200, 0]}}, "widths must be positive"),
        ({"training": {"epochs": True}}, "must be int"),
    ],
)
def test_bad_values_name_the_key(raw, fragment):
    with pytest.raises(ConfigError, match=fragment):
        config_from_dict(raw, "f.toml")


def test_int_is_accepted_where_float_is_expected():
    cfg = config_from_dict({"training": {"learning_rate": 1}}, "f.toml")
    assert cfg.training.learning_rate == 1.0 and isinstance(cfg.training.learning_rate, float)


def test_overrides_parse_toml_values_and_bare_strings():
    assert parse_override("training.epochs=5") == (["training", "epochs"], 5)
    assert parse_override('data.columns=["a","b*"]') == (["data", "columns"], ["a", "b*"])
    assert parse_override("model.name=sae") == (["model", "name"], "sae")
    raw = apply_overrides({"training": {"epochs": 9}}, ["training.epochs=2", "model.latent_dim=3"])
    assert raw == {"training": {"epochs": 2}, "model": {"latent_dim": 3}}
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        parse_override("epochs")


def test_load_config_resolves_relative_to_its_folder(tmp_path):
    (tmp_path / "config.toml").write_text('[data]\ninput = "data/x.parquet"\n')
    cfg = load_config(tmp_path / "config.toml")
    assert cfg.base_dir == tmp_path.resolve()
    assert cfg.data.input == ["data/x.parquet"]


def test_invalid_toml_is_a_one_line_error(tmp_path):
    (tmp_path / "config.toml").write_text("[data\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "config.toml")


def test_docs_config_reference_is_up_to_date():
    doc = (REPO / "docs" / "config.md").read_text()
    assert doc == render_config_reference(), (
        "docs/config.md is stale: run python -m baler_ext.config_reference > docs/config.md"
    )


def test_registry_choices_are_the_registries_names():
    """CHOICES reads the registries (never a copy); a value outside one is refused with
    the registry's names, and a newly registered name becomes valid at once."""
    from baler_ext.codec.entropy import CODER_REGISTRY
    from baler_ext.codec.modes import MODE_REGISTRY
    from baler_ext.config import CHOICES, REGISTRY_CHOICES
    from baler_ext.losses import RECONSTRUCTION_LOSSES, register_loss

    assert CHOICES[("training", "loss")] == tuple(RECONSTRUCTION_LOSSES.names())
    assert CHOICES[("compression", "mode")] == tuple(MODE_REGISTRY.names())
    assert CHOICES[("compression", "entropy_coder")] == tuple(CODER_REGISTRY.names())
    assert set(REGISTRY_CHOICES) <= set(CHOICES)
    with pytest.raises(ConfigError, match="mse_sum"):
        config_from_dict({"training": {"loss": "huber"}}, "test")
    register_loss("huber_test_only")(RECONSTRUCTION_LOSSES.get("mse"))
    try:
        assert (
            config_from_dict({"training": {"loss": "huber_test_only"}}, "test").training.loss
            == "huber_test_only"
        )
    finally:
        RECONSTRUCTION_LOSSES._entries.pop("huber_test_only")


def test_activation_choices_match_the_model_layers():
    from baler_ext.config import CHOICES
    from baler_ext.models.base import ACTIVATIONS

    assert CHOICES[("model", "activation")] == tuple(ACTIVATIONS)


def test_docs_list_every_registered_model_and_its_options():
    import dataclasses

    from baler_ext.models import MODEL_REGISTRY

    doc = render_config_reference()
    for name in MODEL_REGISTRY.names():
        assert f"### `{name}`" in doc
        opts = getattr(MODEL_REGISTRY.get(name), "Options", None)
        for f in dataclasses.fields(opts) if opts is not None else ():
            assert f"| `{f.name}` |" in doc
