"""Container headers written by older versions still load."""

from __future__ import annotations

import json
from dataclasses import asdict

import pyarrow as pa
import pytest

from baler_ext.io.layout import LIST_COLLECTION, BranchInfo, SourceLayout
from baler_ext.io.parquet import SCHEMA_FROM_LAYOUT, schema_from_header, schema_to_header


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


def test_layout_header_leaves_branch_defaults_out_and_loads_them_back():
    layout = SourceLayout(
        "parquet",
        "jets.parquet",
        None,
        [BranchInfo("pt", "float64"), BranchInfo("j", "float32", True, LIST_COLLECTION)],
        ["pt", "j"],
    )
    d = layout.to_dict()
    assert d["branches"] == [
        {"name": "pt", "dtype": "float64"},
        {"name": "j", "dtype": "float32", "jagged": True, "counter": LIST_COLLECTION},
    ]
    assert SourceLayout.from_dict(json.loads(json.dumps(d))) == layout


def _layout(*branches: BranchInfo) -> SourceLayout:
    return SourceLayout("parquet", "t.parquet", None, list(branches), [branches[0].name])


def test_arrow_schema_the_layout_implies_is_not_stored_and_rebuilds_equal():
    table = pa.table(
        {
            "pt": pa.array([1.0, 2.0]),
            "n": pa.array([1, 2], pa.int32()),
            "ok": pa.array([True, False]),
            "j": pa.array([[1.0], []], pa.list_(pa.float32())),
        }
    )
    layout = _layout(
        BranchInfo("pt", "float64"),
        BranchInfo("n", "int32"),
        BranchInfo("ok", "bool"),
        BranchInfo("j", "float32", True, LIST_COLLECTION),
    )
    assert schema_to_header(table.schema, layout) == SCHEMA_FROM_LAYOUT
    rebuilt = schema_from_header(SCHEMA_FROM_LAYOUT, layout)
    assert rebuilt.serialize().to_pybytes() == table.schema.serialize().to_pybytes()
    assert schema_to_header(None, layout) is None and schema_from_header(None, layout) is None


@pytest.mark.parametrize(
    "schema",
    [
        pa.schema([pa.field("pt", pa.float64())], metadata={b"pandas": b"{}"}),
        pa.schema([pa.field("pt", pa.float64(), nullable=False)]),
        pa.schema([pa.field("pt", pa.float64(), metadata={b"unit": b"GeV"})]),
        pa.schema([pa.field("pt", pa.float32())]),  # not what the layout says
    ],
)
def test_arrow_schema_with_anything_the_layout_lacks_is_stored_whole(schema):
    layout = _layout(BranchInfo("pt", "float64"))
    value = schema_to_header(schema, layout)
    assert value != SCHEMA_FROM_LAYOUT
    assert schema_from_header(value, layout).equals(schema, check_metadata=True)
