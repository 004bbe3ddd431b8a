"""The cohort table: one row per scan, the same schema for synthetic and real data.

A manifest is a CSV with the columns `subject_id, path, age, sex, group, site` (extra columns are
kept). `path` is absolute or relative to the manifest's folder. `sex` and `site` may be missing:
each becomes the placeholder `unknown` for every row (sex not recorded; one site), with a
warning. To predict brain age alone (`labelled=False`), `age` and `group` may be missing or
empty too, and the table may be a folder of NIfTI files. `read_manifest` checks every row and
reports every problem at once, naming the file, the line and the column.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from neurocvae.data.archives import scan_exists
from neurocvae.errors import InputError

log = logging.getLogger(__name__)
# A group is any name a table gives (e.g. HC, MDD, diabetes, dual: docs/science.md §1.1); the
# healthy controls are the group named `controls` in each command's settings, HC by default.
HEALTHY = "HC"
UNKNOWN = "unknown"  # sex not recorded; the one site of a table without sites; no group
SEXES = ("F", "M", UNKNOWN)

# Columns of a manifest; extra columns are kept. A missing optional column becomes UNKNOWN.
MANIFEST_COLUMNS = ("subject_id", "path", "age", "sex", "group", "site")
OPTIONAL_COLUMNS = ("sex", "site")
LABELS = ("age", "group")  # optional when predicting brain age only (`labelled=False`)

AGE_RANGE = (0, 130)  # years a person can be
MAX_LISTED = 20  # problems listed in one error message before "… and N more"


def problem_list(problems: list[str]) -> str:
    """Problems as indented lines, at most `MAX_LISTED` of them."""
    shown = [f"  - {p}" for p in problems[:MAX_LISTED]]
    if len(problems) > MAX_LISTED:
        shown.append(f"  … and {len(problems) - MAX_LISTED} more")
    return "\n".join(shown)


def line_of(row: int) -> int:
    """The CSV line (1 = header) of the 0-based data row `row`: what a spreadsheet shows."""
    return row + 2


def read_table(path: Path, what: str, **read_csv: Any) -> pd.DataFrame:
    """A CSV (or other `sep`) table as strings, empty cells kept as "" (UTF-8, with or without
    the byte-order mark spreadsheets write); `InputError` naming the file when it is missing or
    cannot be parsed. `what` names it: "cohort table", …"""
    if not path.is_file():
        raise InputError(f"{path}: no such {what}")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig",
                           **read_csv)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as error:
        raise InputError(f"{path}: not a readable {what} ({error})") from error


def read_manifest(path: str | Path, *, check_files: bool = True,
                  labelled: bool = True) -> pd.DataFrame:
    """Read and validate a cohort table.

    Returns the table with `path` made absolute, `age` as float (NaN where unknown),
    `subject_id`, `sex`, `group` and `site` as strings, in file order; a missing `sex` or `site`
    column (and, unless `labelled`, a missing or empty `age` or `group`) is filled with NaN or
    `UNKNOWN`. Raises `InputError` listing every bad row.
    """
    path = Path(path)
    if path.is_dir() and labelled:
        raise InputError(f"{path} is a folder of scans: training and selection need a "
                         "cohort table with ages and groups")
    frame = scan_table(path) if path.is_dir() else read_table(path, "cohort table")
    optional = OPTIONAL_COLUMNS + (() if labelled else LABELS)
    missing = [c for c in MANIFEST_COLUMNS if c not in frame.columns and c not in optional]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(missing)}; a cohort table needs "
            f"{', '.join(c for c in MANIFEST_COLUMNS if c not in optional)} and may have "
            f"{', '.join(optional)} (found {', '.join(frame.columns)})")
    if frame.empty:
        raise InputError(f"{path}: no rows; a cohort table needs one row per scan")
    frame = frame.copy()
    for column in optional:
        if column not in frame.columns:
            if labelled:
                log.warning("%s: no %s column; every row gets %s=%s", path, column, column,
                            UNKNOWN)
            frame[column] = UNKNOWN if column != "age" else ""
    if not labelled:
        frame["group"] = frame["group"].replace("", UNKNOWN)
    frame["subject_id"] = frame["subject_id"].str.strip()
    frame["path"] = [_resolve(p.strip(), path.parent) for p in frame["path"]]
    ages = pd.to_numeric(frame["age"].str.strip(), errors="coerce")
    problems = _row_problems(frame, ages, check_files=check_files, labelled=labelled)
    if problems:
        raise InputError(f"{path}: {len(problems)} problem(s)\n{problem_list(problems)}")
    frame["age"] = ages.astype(float)
    frame.attrs["source"] = str(path)
    return frame


def _row_problems(frame: pd.DataFrame, ages: pd.Series, *, check_files: bool,
                  labelled: bool) -> list[str]:
    """Every bad cell of a cohort table, as "line L, column C: what is wrong"."""
    problems: list[str] = []
    first_line: dict[str, int] = {}
    for row, record in enumerate(frame.itertuples(index=False)):
        where = f"line {line_of(row)}"
        if not record.subject_id:
            problems.append(f"{where}, column subject_id: empty")
        elif record.subject_id in first_line:
            problems.append(f"{where}, column subject_id: {record.subject_id!r} is a duplicate "
                            f"of line {first_line[record.subject_id]}")
        else:
            first_line[record.subject_id] = line_of(row)
        age = ages.iloc[row]
        if not record.age.strip():
            if labelled:
                problems.append(f"{where}, column age: missing")
        elif not math.isfinite(age):
            problems.append(f"{where}, column age: {record.age!r} is not a number (years)")
        elif not AGE_RANGE[0] <= age <= AGE_RANGE[1]:
            problems.append(f"{where}, column age: {record.age.strip()} is outside "
                            f"{AGE_RANGE[0]}–{AGE_RANGE[1]} years")
        if record.sex not in SEXES:
            problems.append(f"{where}, column sex: {record.sex!r}, expected one of {SEXES}")
        if not record.group.strip() or record.group != record.group.strip():
            problems.append(f"{where}, column group: {record.group!r}; expected a group name "
                            "(e.g. HC), without spaces around it")
        if not record.site.strip():
            problems.append(f"{where}, column site: empty (use one value for a single site)")
        if not record.path:
            problems.append(f"{where}, column path: empty")
        elif check_files and not scan_exists(record.path):
            problems.append(f"{where}, column path: no such file {record.path}")
    return problems


SCAN_SUFFIXES = (".nii", ".nii.gz")


def scan_id(path: str | Path) -> str:
    """A scan's subject id from its file path: the path without `.nii` or `.nii.gz`."""
    return str(path).removesuffix(".gz").removesuffix(".nii")


def scan_table(folder: Path) -> pd.DataFrame:
    """A folder of scans as a table of strings: one row per NIfTI file under it, in path order,
    `subject_id` being the file's path inside the folder without its suffix."""
    scans = sorted(p for p in folder.rglob("*") if p.name.endswith(SCAN_SUFFIXES))
    if not scans:
        raise InputError(f"{folder}: no NIfTI file (*.nii, *.nii.gz) in this folder")
    ids = [scan_id(p.relative_to(folder)) for p in scans]
    return pd.DataFrame({"subject_id": ids, "path": [str(p.resolve()) for p in scans]})


def _resolve(value: str, folder: Path) -> str:
    """An absolute path for a manifest entry given relative to the manifest's folder."""
    if not value:
        return ""
    return str(Path(value) if Path(value).is_absolute() else (folder / value).resolve())


def check_disjoint(tables: dict[str, pd.DataFrame]) -> None:
    """Raise `InputError` if a subject (by id or by image path) is in more than one table."""
    problems = []
    names = list(tables)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            for column in ("subject_id", "path"):
                shared = sorted(set(tables[first][column]) & set(tables[second][column]))
                if shared:
                    problems.append(f"{len(shared)} {column}(s) in both {first} and {second}: "
                                    f"{_examples(shared)}")
    if problems:
        raise InputError("the tables must not share subjects:\n" + problem_list(problems))


def _examples(values: Iterable[str], n: int = 5) -> str:
    values = list(values)
    listed = ", ".join(map(str, values[:n]))
    return listed + (f", … ({len(values)} in all)" if len(values) > n else "")
