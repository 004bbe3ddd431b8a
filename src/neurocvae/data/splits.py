"""Subject-level splits, stratified, deterministic for a seed, written once and reused.

A splits file is JSON: the settings that made it and the subject ids of each split. It is reused
when its settings match the request; a different request is an error rather than a silent
re-split (a re-split would leak test subjects into training across runs).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from neurocvae.data.cohort import problem_list
from neurocvae.errors import InputError
from neurocvae.files import write_text_atomically


def assign_splits(frame: pd.DataFrame, fractions: Mapping[str, float], *, seed: int,
                  stratify: Sequence[str] = ("group", "site")) -> pd.Series:
    """The split name of each row (index as `frame`).

    Within each stratum (a combination of the `stratify` columns present in `frame`) subjects
    are shuffled and cut at the cumulative fractions, rounded: a stratum of one goes to the first
    split.
    """
    _check_fractions(fractions)
    names = list(fractions)
    bounds = np.cumsum([fractions[n] for n in names])
    columns = [c for c in stratify if c in frame.columns]
    rng = np.random.default_rng(seed)
    split = pd.Series("", index=frame.index, dtype=object)
    strata = frame.groupby(columns, sort=True).indices if columns else {(): np.arange(len(frame))}
    for key in sorted(strata):
        rows = rng.permutation(strata[key])
        cuts = np.round(bounds * len(rows)).astype(int)
        for name, start, stop in zip(names, np.r_[0, cuts[:-1]], cuts, strict=True):
            split.iloc[rows[start:stop]] = name
    return split


def _check_fractions(fractions: Mapping[str, float]) -> None:
    values = list(fractions.values())
    if not values or any(v < 0 for v in values) or not np.isclose(sum(values), 1.0):
        raise InputError(f"split fractions {dict(fractions)} must be ≥ 0 and sum to 1")


def load_or_make_splits(frame: pd.DataFrame, path: str | Path, fractions: Mapping[str, float],
                        *, seed: int, stratify: Sequence[str] = ("group", "site")
                        ) -> dict[str, list[str]]:
    """Subject ids per split: read from `path` if it exists (and matches), else made and written.

    Subjects of the file missing from `frame` are dropped (e.g. rejected volumes); subjects of
    `frame` missing from the file are an error.
    """
    path = Path(path)
    settings = {"seed": seed, "fractions": dict(fractions), "stratify": list(stratify)}
    if path.is_file():
        stored = json.loads(path.read_text())
        if stored.get("settings") != settings:
            raise InputError(
                f"{path} was made with {stored.get('settings')}, this run asks {settings}: "
                "point the splits file elsewhere, or delete it to re-split")
        splits = stored["splits"]
        _check_disjoint(splits, path)
        known = {s for ids in splits.values() for s in ids}
        unknown = [s for s in frame["subject_id"] if s not in known]
        if unknown:
            raise InputError(f"{path} has no split for {len(unknown)} subject(s) of the table "
                             f"(e.g. {', '.join(unknown[:5])}): delete it to re-split")
        present = set(frame["subject_id"])
        return {name: [s for s in ids if s in present] for name, ids in splits.items()}
    split = assign_splits(frame, fractions, seed=seed, stratify=stratify)
    splits = {name: frame["subject_id"][split == name].tolist() for name in fractions}
    path.parent.mkdir(parents=True, exist_ok=True)
    # DDP ranks started together by SLURM may all make the same splits at once, and none may
    # read a half-written file
    write_text_atomically(path, json.dumps({"settings": settings, "splits": splits}, indent=1))
    return splits


def _check_disjoint(splits: Mapping[str, list[str]], path: Path) -> None:
    seen: dict[str, str] = {}
    problems = []
    for name, ids in splits.items():
        for subject in ids:
            if subject in seen:
                problems.append(f"{subject} is in both {seen[subject]} and {name}")
            seen[subject] = name
    if problems:
        raise InputError(f"{path}: splits overlap\n{problem_list(problems)}")
