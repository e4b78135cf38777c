"""Model registry: ``@register_model("sae")`` maps a config name to a class.

Unknown names fail with the list of registered ones. Each model declares an
``Options`` dataclass for its ``[model] options = {...}`` keys, validated like
the rest of the config.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from baler_ext.errors import ConfigError
from baler_ext.registry import Registry

MODEL_REGISTRY: Registry[type] = Registry("model", name_attr="registry_name")


def register_model(name: str) -> Callable[[type], type]:
    """Class decorator registering an autoencoder under ``name``."""
    return MODEL_REGISTRY.register(name)


def model_class(name: str) -> type:
    """The class registered as ``name``; a ConfigError lists the valid names."""
    from baler_ext import models  # noqa: F401  (importing registers every model)

    return MODEL_REGISTRY.get(name)


def parse_options(cls: type, options: dict[str, Any]) -> Any:
    """Validate ``[model] options`` against the model's ``Options`` dataclass."""
    from baler_ext.config import build_section

    opts_cls = getattr(cls, "Options", None)
    if not (isinstance(opts_cls, type) and dataclasses.is_dataclass(opts_cls)):
        if options:
            name = getattr(cls, "registry_name", cls.__name__)
            raise ConfigError(f"model '{name}' takes no options, got {options}")
        return None
    return build_section(opts_cls, options, "config", "model.options")
