"""BAG selection: per-group thresholds, an age-matched background that never repeats a control."""

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neurocvae.brainage.selection import (
    ORIGINAL_THRESHOLDS,
    ShortBackgroundWarning,
    match_background,
    select_targets,
    summarise,
)
from neurocvae.errors import InputError


def people(prefix, ages, bags, group="HC"):
    return pd.DataFrame({"subject_id": [f"{prefix}{i}" for i in range(len(ages))],
                         "age": ages, "bag": bags, "group": group})


def test_targets_pass_their_group_threshold_strictly():
    table = pd.concat([people("m", [60] * 3, [4.0, 4.1, 9.0], "MDD"),
                       people("d", [60] * 3, [-1.0, 0.0, 0.5], "diabetes"),
                       people("b", [60] * 2, [0.2, -3.0], "dual"),
                       people("h", [60] * 2, [5.0, 6.0])])
    chosen = select_targets(table, ORIGINAL_THRESHOLDS)
    assert sorted(chosen["subject_id"]) == ["b0", "d2", "m1", "m2"]
    assert len(select_targets(table, None)) == 8  # no filter: every patient, never a control
    assert sorted(select_targets(table, {"MDD": 4})["group"].unique()) == ["MDD"]
    with pytest.raises(InputError, match="controls are never targets"):
        select_targets(table, {"HC": 0})


def test_background_matches_the_target_histogram_smallest_gap_first():
    targets = people("t", [50.2, 50.9, 61.5, 70.0], [5, 5, 5, 5], "MDD")
    controls = people("c", [50.1, 50.5, 50.7, 61.0, 61.9, 70.5, 71.0],
                      [3.0, -0.5, 1.0, 2.0, -0.1, 9.0, 0.0])
    chosen, short = match_background(targets, controls)
    assert short == {}
    assert sorted(chosen["subject_id"]) == ["c1", "c2", "c4", "c5"]
    summary = summarise(targets, chosen)
    assert all(row["target"] == row["background"] for row in summary["age_histogram"].values())
    assert summary["background_from_other_bins"] == 0


def test_a_short_bin_is_topped_up_from_the_nearest_bins():
    targets = people("t", [45.5, 45.6, 60.0], [1, 1, 1], "dual")
    controls = people("c", [45.1, 46.3, 47.9, 48.5, 60.2], [0.1, 2.0, 0.5, 0.0, 0.0])
    chosen, short = match_background(targets, controls, fallback_years=2)
    assert short == {}
    assert sorted(chosen["subject_id"]) == ["c0", "c1", "c4"]  # 46 is nearer than 47 and 48
    assert summarise(targets, chosen)["background_from_other_bins"] == 1


def test_a_shortfall_beyond_the_fallback_is_reported():
    targets = people("t", [50.0, 50.1, 50.2], [1, 1, 1], "MDD")
    controls = people("c", [50.5, 60.0], [0.0, 0.0])
    with pytest.warns(ShortBackgroundWarning, match="2 target\\(s\\) have no age-matched control"):
        chosen, short = match_background(targets, controls, fallback_years=3)
    assert short == {50: 2}
    assert list(chosen["subject_id"]) == ["c0"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(45, 80), min_size=1, max_size=40),
       st.lists(st.floats(45, 80), max_size=80), st.integers(0, 3))
def test_no_control_is_ever_taken_twice(target_ages, control_ages, fallback):
    rng = np.random.default_rng(len(target_ages))
    targets = people("t", target_ages, rng.normal(0, 3, len(target_ages)), "MDD")
    controls = people("c", control_ages, rng.normal(0, 3, len(control_ages)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ShortBackgroundWarning)
        chosen, short = match_background(targets, controls, fallback_years=fallback)
    assert chosen["subject_id"].is_unique
    assert len(chosen) + sum(short.values()) == len(targets)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(45, 79.9), min_size=1, max_size=40),
       st.lists(st.floats(45, 80), max_size=40))
def test_enough_controls_give_the_target_histogram_bin_by_bin(target_ages, extra_ages):
    rng = np.random.default_rng(len(extra_ages))
    targets = people("t", target_ages, rng.normal(0, 3, len(target_ages)), "MDD")
    same_bins = np.floor(target_ages) + rng.uniform(0, 1, len(target_ages))
    ages = np.concatenate([same_bins, extra_ages])
    controls = people("c", ages, rng.normal(0, 3, len(ages)))
    chosen, short = match_background(targets, controls)
    assert short == {}
    histogram = summarise(targets, chosen)["age_histogram"]
    assert all(row["target"] == row["background"] for row in histogram.values())
