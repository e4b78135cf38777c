"""Symmetry augmentation of the rate model's training rows (``rate.augment``)."""

from __future__ import annotations

import numpy as np
import pytest

from baler_ext.codec import relations
from baler_ext.codec.modes import ChunkContext
from baler_ext.config import RateConfig
from baler_ext.errors import ConfigError
from baler_ext.stages.augment import augmented_copies, kinematics

from ..codec.test_learned_mode import events_of, learned_mode
from ..codec.test_relations import COLS, limits, table

J = {c: i for i, c in enumerate(COLS)}


@pytest.mark.parametrize("preference", ["cartesian", "polar"])
def test_kinematic_columns_come_from_the_detected_relations(preference):
    rels = relations.detect(table(500), COLS, set(COLS), preference=preference)
    kin = kinematics(rels, COLS)
    assert (kin.px, kin.py, kin.pz, kin.phi, kin.eta) == (
        J["px"],
        J["py"],
        J["pz"],
        J["phi"],
        J["eta"],
    )
    assert kinematics([], COLS).indices() == []  # names alone are not trusted


def test_copies_turn_and_reflect_whole_events_and_keep_the_rest():
    x = table(400, seed=3)
    kin = kinematics(relations.detect(x, COLS, set(COLS), preference="cartesian"), COLS)
    first = events_of(len(x))  # two objects per event
    frozen = np.zeros(len(x), bool)
    frozen[7] = True
    out = augmented_copies(x, first, kin, 2, seed=0, frozen=frozen)
    assert out.shape == (2 * len(x), len(COLS))
    for y in np.split(out, 2):
        # invariants of the symmetry group: pt, |pz|, |eta|, mass, energy and the rest
        pt = np.hypot(y[:, J["px"]], y[:, J["py"]])
        np.testing.assert_allclose(pt, np.hypot(x[:, J["px"]], x[:, J["py"]]), rtol=1e-12)
        for c in ("pt", "mass", "energy", "fa", "fb", "fc", "other"):
            np.testing.assert_array_equal(y[:, J[c]], x[:, J[c]])
        np.testing.assert_array_equal(np.abs(y[:, J["pz"]]), np.abs(x[:, J["pz"]]))
        # phi turns with (px, py): the relation still holds on the copy
        np.testing.assert_allclose(
            np.angle(np.exp(1j * (y[:, J["phi"]] - np.arctan2(y[:, J["py"]], y[:, J["px"]])))),
            np.angle(np.exp(1j * (x[:, J["phi"]] - np.arctan2(x[:, J["py"]], x[:, J["px"]])))),
            atol=1e-12,
        )
        assert np.all(np.abs(y[:, J["phi"]]) <= np.pi)
        # eta and pz flip together, and both objects of an event turn by the same angle
        flip = np.sign(y[:, J["pz"]]) != np.sign(x[:, J["pz"]])
        np.testing.assert_array_equal(flip, np.sign(y[:, J["eta"]]) != np.sign(x[:, J["eta"]]))
        turn = np.angle(np.exp(1j * (y[:, J["phi"]] - x[:, J["phi"]])))
        pairs = np.arange(len(x) // 2) != 3  # event 3 holds the frozen row 7
        same = np.abs(np.exp(1j * turn[0::2]) - np.exp(1j * turn[1::2]))  # on the circle
        assert np.all(same[pairs] < 1e-9)
        np.testing.assert_array_equal(flip[0::2][pairs], flip[1::2][pairs])
        assert np.ptp(turn) > 3.0 and 0.2 < flip.mean() < 0.8  # the copies differ
        np.testing.assert_array_equal(y[7], x[7])  # a frozen row is copied unchanged
    a, b = np.split(out, 2)
    assert not np.array_equal(a[:, J["px"]], b[:, J["px"]])


def assert_round_trip_meets_every_bound(mode) -> None:
    """A table the model never saw decodes within every bound."""
    x = table(600, seed=7)
    ints = {"n": np.rint(np.abs(x[:, 3]) / 10).astype(np.int64)}
    ctx = ChunkContext(events_of(len(x)), ints)
    out = mode.decode(mode.encode(x, ctx), len(x), ctx)
    assert np.all(np.abs(out - x) <= limits(x, COLS))


def test_augmented_training_meets_every_bound_and_only_adds_training_rows(caplog):
    rate = RateConfig(
        hidden=[16], epochs=2, order="natural", mixture_start="scratch", augment=2, refit=False
    )
    with caplog.at_level("INFO"):
        mode, _ = learned_mode(table(1200, seed=6), rate)
    assert "2 rotated/reflected copies of the 900 rows the rate model trains on" in caplog.text
    assert_round_trip_meets_every_bound(mode)


def test_refit_trains_the_chosen_model_on_training_and_validation_rows(caplog):
    rate = RateConfig(
        hidden=[16], epochs=3, order="natural", mixture_start="single", augment=1, refit=True
    )
    with caplog.at_level("INFO"):
        mode, _ = learned_mode(table(1200, seed=6), rate)
    # the copies cover the validation rows too; the choosing fits still train on 900 rows
    assert "1 rotated/reflected copies of the 1200 rows the rate model trains on" in caplog.text
    model = mode.learned
    refit = model.settings["refit"]
    assert refit["rows"] == 2400 and 1 <= refit["epochs"] <= 3
    trials = model.settings["mixture_trials"]
    summary = model.settings["summary"]
    # the reported validation rate is the chosen fit's own (out of sample), not the refit's
    assert summary["val_learned_bits_per_row"] == trials[trials["chosen"]]
    assert_round_trip_meets_every_bound(mode)


def test_augment_is_checked():
    with pytest.raises(ConfigError, match=r"rate\.augment"):
        RateConfig(augment=-1).validate()
    with pytest.raises(ConfigError, match=r"rate\.mixture_columns"):
        RateConfig(mixture_columns="some").validate()


def test_copies_cover_the_rows_up_to_the_last_training_row_and_start_new_events():
    from baler_ext.stages.rate import _augment

    from ..codec.test_relations import mode_for

    x = table(400, seed=8)
    mode = mode_for(x)
    found = relations.detect(x, COLS, set(COLS), preference="cartesian")
    first = events_of(len(x))
    first[0] = False  # the first row starts an event whether or not it is marked
    ints = {"n": np.arange(len(x))}
    x[5, J["pz"]] = -999.0  # a sentinel the mode keeps exactly: its row is not turned
    mode.exact = {"pz": np.array([-999.0])}
    train = np.arange(0, 300, 2)  # last training row 298: the copy holds rows 0-298
    values, first2, ints2, train2, origin = _augment(
        mode, found, x, first, ints, train, RateConfig(augment=2), 0
    )
    np.testing.assert_array_equal(origin, np.concatenate([np.arange(400), *[np.arange(299)] * 2]))
    assert values.shape == (400 + 2 * 299, len(COLS))
    np.testing.assert_array_equal(train2, np.concatenate([train, train + 400, train + 699]))
    assert first2 is not None and first2[400] and first2[699]  # each copy opens an event
    np.testing.assert_array_equal(first2[401:699], first[1:299])
    np.testing.assert_array_equal(ints2["n"][400:699], np.arange(299))
    np.testing.assert_array_equal(values[400:699, J["mass"]], x[:299, J["mass"]])
    np.testing.assert_array_equal(values[405], x[5])
    np.testing.assert_array_equal(values[704], x[5])
    assert not np.array_equal(values[404], x[4])
    assert _augment(mode, found, x, first, ints, train, RateConfig(augment=0), 0)[0] is x
