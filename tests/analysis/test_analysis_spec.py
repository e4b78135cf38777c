"""AnalysisSpec: defaults, validation messages, TOML-friendly field types."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from baler_ext.analysis import AnalysisSpec, background_names, peak_names
from baler_ext.errors import ConfigError

ALLOWED_TYPES = {str, int, float, bool, list[str], list[float]}


def test_defaults_are_valid_and_documented() -> None:
    spec = AnalysisSpec()
    spec.validate()
    hints = typing.get_type_hints(AnalysisSpec)
    for f in dataclasses.fields(AnalysisSpec):
        assert f.metadata.get("doc"), f"{f.name} has no doc"
        assert "\n" not in f.metadata["doc"]
        hint = hints[f.name]
        args = set(typing.get_args(hint)) - {type(None)}
        assert hint in ALLOWED_TYPES or (args and args <= ALLOWED_TYPES), (f.name, hint)
    assert spec.fit_range == [120.0, 230.0]
    assert (spec.bins, spec.peak, spec.background, spec.minos) == (55, "gauss", "poly1", False)


def test_list_defaults_are_not_shared() -> None:
    a, b = AnalysisSpec(), AnalysisSpec()
    a.selection.append("pt > 1")
    assert b.selection == []


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"peak": "lorentz"}, "gauss, breit_wigner, voigt, crystal_ball"),
        ({"background": "poly7"}, "poly0, poly1, poly2, poly3, exp"),
        ({"fit_range": [230.0, 120.0]}, "not increasing"),
        ({"fit_range": [120.0]}, "[low, high]"),
        ({"bins": 4}, "at least 5"),
        ({"variable": "trijet"}, "column, p4_ptetaphim, p4_pxpypze, event_combination"),
        ({"variable": "p4_pxpypze", "p4_columns": ["px", "py"]}, "exactly 4"),
        ({"variable": "event_combination", "p4_kind": "xyz"}, "ptetaphim, pxpypze"),
        ({"variable": "event_combination", "n_objects": 0}, "at least 1"),
        ({"selection": ["pt >"]}, "not a valid expression"),
        ({"selection": ["__import__('os')"]}, "not allowed"),
        ({"min_entries": 0}, "at least 1"),
    ],
)
def test_validate_rejects_bad_values(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        AnalysisSpec(**kwargs).validate()  # type: ignore[arg-type]
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_unknown_peak_lists_valid_names() -> None:
    with pytest.raises(ConfigError, match="use one of") as info:
        AnalysisSpec(peak="landau").validate()
    for name in peak_names():
        assert name in str(info.value)
    assert set(background_names()) == {"poly0", "poly1", "poly2", "poly3", "exp"}


def test_from_dict_rejects_unknown_key_with_hint() -> None:
    with pytest.raises(ConfigError, match="did you mean 'fit_range'"):
        AnalysisSpec.from_dict({"fitrange": [100.0, 200.0]})
    spec = AnalysisSpec.from_dict({"peak": "voigt", "bins": 40})
    assert spec.peak == "voigt"
    assert spec.to_dict()["bins"] == 40


def test_required_columns() -> None:
    spec = AnalysisSpec(selection=["pt > 400", "abs(eta) < 2"])
    assert spec.required_columns() == ["eta", "mass", "pt"]
    combo = AnalysisSpec(variable="event_combination", order_by="pt", selection=["girth < 1"])
    assert combo.required_columns() == ["eta", "event", "girth", "mass", "phi", "pt"]
