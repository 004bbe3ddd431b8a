"""Atomic writes: the file holds the old text or the new, and nothing is left beside it; JSON
files are strictly valid JSON."""

import json

import numpy as np
import pytest

from neurocvae.files import write_json, write_text_atomically


def test_a_file_is_replaced_whole_and_nothing_is_left_beside_it(tmp_path):
    path = tmp_path / "splits.json"
    write_text_atomically(path, "old")
    write_text_atomically(path, "new text")
    assert path.read_text() == "new text"
    assert [p.name for p in tmp_path.iterdir()] == ["splits.json"]


def strict(constant: str):
    raise ValueError(f"{constant} is not JSON")


def test_json_files_write_nan_and_inf_as_null(tmp_path):
    metrics = {"r": float("nan"), "n": np.int64(3), "mae": np.float32(1.5),
               "by_group": {"HC": [1.0, float("inf"), np.float64("nan")]}, "pair": (0.5, -np.inf)}
    write_json(tmp_path / "metrics.json", metrics)
    text = (tmp_path / "metrics.json").read_text()
    assert json.loads(text, parse_constant=strict) == {
        "r": None, "n": 3, "mae": 1.5, "by_group": {"HC": [1.0, None, None]},
        "pair": [0.5, None]}
    with pytest.raises(ValueError, match="NaN is not JSON"):
        json.loads('{"r": NaN}', parse_constant=strict)
