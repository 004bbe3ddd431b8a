"""Subject-level splits: disjoint, stratified, deterministic, written once and reused."""

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neurocvae.data.splits import assign_splits, load_or_make_splits
from neurocvae.errors import InputError

FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}


def table(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"subject_id": [f"s{i}" for i in range(n)],
                         "group": rng.choice(["HC", "MDD", "diabetes", "dual"], n),
                         "site": rng.choice(["A", "B", "C"], n)})


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 300), seed=st.integers(0, 2**16))
def test_every_subject_lands_in_exactly_one_split(n, seed):
    frame = table(n, seed)
    split = assign_splits(frame, FRACTIONS, seed=seed)
    assert set(split) <= set(FRACTIONS)
    assert (split != "").all()
    assert split.equals(assign_splits(frame, FRACTIONS, seed=seed))


def test_each_group_and_site_is_split_in_proportion():
    frame = table(2000)
    split = assign_splits(frame, FRACTIONS, seed=1)
    shares = pd.crosstab([frame["group"], frame["site"]], split, normalize="index")
    assert np.allclose(shares["train"], 0.7, atol=0.03)
    assert np.allclose(shares["test"], 0.15, atol=0.03)


def test_the_file_is_reused_and_a_different_request_is_refused(tmp_path):
    frame, path = table(100), tmp_path / "splits.json"
    first = load_or_make_splits(frame, path, FRACTIONS, seed=3)
    stored = json.loads(path.read_text())
    assert stored["settings"]["seed"] == 3
    assert load_or_make_splits(frame.iloc[::-1], path, FRACTIONS, seed=3) == first
    fewer = load_or_make_splits(frame.iloc[:50], path, FRACTIONS, seed=3)
    assert sum(map(len, fewer.values())) == 50
    with pytest.raises(InputError, match="was made with"):
        load_or_make_splits(frame, path, FRACTIONS, seed=4)
    with pytest.raises(InputError, match="no split for 1 subject"):
        load_or_make_splits(pd.concat([frame, table(101).iloc[[100]]]), path, FRACTIONS, seed=3)


def test_an_edited_file_with_overlapping_splits_is_refused(tmp_path):
    frame, path = table(20), tmp_path / "splits.json"
    load_or_make_splits(frame, path, FRACTIONS, seed=0)
    stored = json.loads(path.read_text())
    stored["splits"]["val"].append(stored["splits"]["train"][0])
    path.write_text(json.dumps(stored))
    with pytest.raises(InputError, match="is in both train and val"):
        load_or_make_splits(frame, path, FRACTIONS, seed=0)


def test_fractions_must_sum_to_one():
    with pytest.raises(InputError, match="sum to 1"):
        assign_splits(table(10), {"train": 0.8, "val": 0.1}, seed=0)
