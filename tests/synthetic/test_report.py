import re

import numpy as np
import pandas as pd

from neurocvae.synthetic.report import (
    age_matched_controls,
    difference_weights,
    write_cohort_report,
)


def test_matching_takes_the_nearest_ages():
    matched = age_matched_controls(np.array([50.0, 70.0]), np.array([49, 60, 71, 52, 69.5]), k=2)
    assert matched.tolist() == [[0, 3], [4, 2]]


def test_difference_weights_compare_each_patient_with_same_sex_controls():
    table = pd.DataFrame({"group": ["HC", "HC", "HC", "MDD", "MDD"],
                          "sex": ["M", "F", "F", "F", "M"], "age": [60, 61, 50, 55, 70]})
    w = difference_weights(table, "MDD")
    assert np.isclose(w.sum(), 0)  # a difference of two means
    assert w[3] == w[4] == 0.5
    assert w[0] == -0.5  # the only male control, for the male patient
    assert np.isclose(w[1] + w[2], -0.5)


def test_report_shows_every_picture_it_names(ci_cohort, tmp_path):
    report = write_cohort_report(ci_cohort, tmp_path / "report")
    text = report.read_text()
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert {"montage.png", "difference_MDD.png", "difference_dual.png",
            "ventricles.png"} <= set(pictures)
    for picture in pictures:
        assert (report.parent / picture).stat().st_size > 10_000
    assert "| dual |" in text and "(planted)" in text
    f = float(re.search(r"f = ([0-9.]+)%", text).group(1))
    assert 0 < f < 100
