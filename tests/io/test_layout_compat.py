"""Container headers written by older versions still load."""

from __future__ import annotations

from dataclasses import asdict

from baler_ext.io.layout import BranchInfo, SourceLayout


def test_layout_from_an_older_header_with_retired_keys_loads():
    layout = SourceLayout(
        "parquet",
        "jets.parquet",
        None,
        [BranchInfo("pt", "float64"), BranchInfo("n", "int32")],
        ["pt"],
    )
    old = dict(asdict(layout), constant_in_source={"pt": 1.0})
    assert SourceLayout.from_dict(old) == layout
    assert SourceLayout.from_dict(asdict(layout)) == layout
