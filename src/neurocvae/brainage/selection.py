"""BAG-driven choice of the target (patients) and background (healthy controls) sets.

Targets: patients whose BAG exceeds their group's threshold (the original's MDD > 4,
diabetes > 0, dual > 0 years, scaling-form BAG), or every patient (`thresholds=None`).

Background: age-matched controls. Target ages fall into bins of `bin_years` ([a, a + 1) by
default); each bin takes as many controls of its own ages as it has targets, smallest |BAG|
first, and no control is taken twice. A bin short of controls is topped up afterwards from the
controls left in the bins 1, 2, … `fallback_years` bins away (both sides together, smallest
|BAG| first; the original topped up its 45-year bin from 46). A shortfall left after that is
reported with a warning and in the summary; the background is then smaller than the target set.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd

from neurocvae.data.cohort import HEALTHY
from neurocvae.errors import InputError

ORIGINAL_THRESHOLDS = {"MDD": 4.0, "diabetes": 0.0, "dual": 0.0}


class ShortBackgroundWarning(UserWarning):
    """Too few controls to age-match every target, even with the fallback."""


def select_targets(table: pd.DataFrame, thresholds: Mapping[str, float] | None,
                   controls: str = HEALTHY) -> pd.DataFrame:
    """Patients (every group but `controls`) with `bag` > `thresholds[group]`; groups without a
    threshold are left out, with a warning.

    `thresholds=None`: every patient, no BAG filter.
    """
    patients = table[table["group"] != controls]
    if thresholds is None:
        return patients.copy()
    if controls in thresholds:
        raise InputError(f"selection.thresholds has {controls}: controls are never targets")
    unknown = sorted(set(thresholds) - set(patients["group"]))
    if unknown:
        warnings.warn(f"selection.thresholds names group(s) with no patient: {unknown}",
                      stacklevel=2)
    left_out = sorted(set(patients["group"]) - set(thresholds))
    if left_out:
        warnings.warn(f"patient group(s) {left_out} have no selection threshold and are left "
                      "out of the targets", stacklevel=2)
    limit = patients["group"].map(thresholds)
    return patients[limit.notna() & (patients["bag"] > limit)].copy()


def _bins(age: pd.Series, bin_years: float) -> pd.Series:
    return np.floor(age / bin_years).astype(int)


def match_background(targets: pd.DataFrame, controls: pd.DataFrame, *, bin_years: float = 1.0,
                     fallback_years: int = 3) -> tuple[pd.DataFrame, dict[int, int]]:
    """Age-matched controls for `targets` (both tables need `age`, `bag`, `subject_id`).

    Returns the chosen controls (each at most once, with `matched_bin`: the target bin it
    serves, in units of `bin_years`) and the shortfall per bin that stayed unfilled.
    """
    need = _bins(targets["age"], bin_years).value_counts().sort_index()
    pool = controls.assign(age_bin=_bins(controls["age"], bin_years),
                           abs_bag=controls["bag"].abs())
    pool = pool.sort_values(["abs_bag", "subject_id"], kind="stable")
    taken: list[pd.DataFrame] = []

    def take(rows: pd.DataFrame, n: int, for_bin: int) -> int:
        nonlocal pool
        chosen = rows.head(n)
        pool = pool.drop(chosen.index)
        taken.append(chosen.assign(matched_bin=for_bin))
        return len(chosen)

    short = {}
    for b, n in need.items():  # first each bin from its own ages
        short[b] = n - take(pool[pool["age_bin"] == b], n, b)
    for b in need.index:  # then the shortfalls from the nearest bins
        for distance in range(1, fallback_years + 1):
            if short[b] == 0:
                break
            near = pool[(pool["age_bin"] - b).abs() == distance]
            short[b] -= take(near, short[b], b)
    short = {int(b): int(n) for b, n in short.items() if n}
    if short:
        warnings.warn(f"{sum(short.values())} target(s) have no age-matched control within "
                      f"{fallback_years} bin(s) of their age (bins {sorted(short)}): the "
                      "background is smaller than the target set", ShortBackgroundWarning,
                      stacklevel=2)
    chosen = pd.concat(taken) if taken else controls.head(0).assign(matched_bin=0)
    return chosen.drop(columns=["age_bin", "abs_bag"], errors="ignore"), short


def summarise(targets: pd.DataFrame, background: pd.DataFrame, *, bin_years: float = 1.0
              ) -> dict:
    """Counts per group, BAG per target group, and both age histograms bin by bin."""
    def bag_stats(rows: pd.DataFrame) -> dict:
        return {"n": len(rows), "bag_mean": float(rows["bag"].mean()),
                "bag_sd": float(rows["bag"].std()), "bag_min": float(rows["bag"].min()),
                "bag_max": float(rows["bag"].max())}

    histogram = pd.DataFrame({"target": _bins(targets["age"], bin_years).value_counts(),
                              "background": _bins(background["age"], bin_years).value_counts()})
    histogram = histogram.fillna(0).astype(int).sort_index()
    return {
        "target": {group: bag_stats(rows) for group, rows in targets.groupby("group")},
        "background": bag_stats(background),
        "age_histogram": {f"{b * bin_years:g}": row.to_dict() for b, row in histogram.iterrows()},
        "background_from_other_bins": int((_bins(background["age"], bin_years)
                                           != background["matched_bin"]).sum()),
    }
