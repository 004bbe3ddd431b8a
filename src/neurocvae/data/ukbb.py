"""UK Biobank adapter: a phenotype table plus the imaging tree → a neurocvae manifest.

Group rule (docs/science.md §1.1), imaging visit (instance 2):

| group    | depression status 20126-0.0 | diabetes age at diagnosis 2976-2.0 |
|----------|-----------------------------|------------------------------------|
| HC       | 0                           | missing                            |
| MDD      | 3, 4 or 5                   | missing                            |
| diabetes | 0                           | present (−1 "do not know" included) |
| dual     | 3, 4 or 5                   | present                            |

Everybody else (bipolar 1/2, missing status, no imaging age, no image file) is excluded, with the
reason, into `excluded.csv`. Sex (31-0.0) and assessment centre (54-2.0) are optional: a table
without them gets `unknown` for every participant, with a warning. Images are field 20252 as
delivered: the zip `<eid>_20252_2_0.zip` holding `T1/<file>` (read in place, never unpacked),
or the unpacked folder `<eid>_20252_2_0/T1/<file>`.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from neurocvae.data.archives import ARCHIVE_SUFFIX, scan_exists
from neurocvae.data.cohort import UNKNOWN, read_table
from neurocvae.errors import InputError

log = logging.getLogger(__name__)

FIELDS = {
    "eid": "eid",
    "age": "21003-2.0",
    "depression": "20126-0.0",
    "diabetes": "2976-2.0",
    "sex": "31-0.0",
    "site": "54-2.0",
}
OPTIONAL_FIELDS = ("sex", "site")
IMAGES = {
    # What pretrained SFCN expects: brain-extracted, linearly (affine) registered to MNI152 1 mm.
    "linear": "T1_brain_linearto_MNI.nii.gz",
    # Non-linearly warped to MNI152 1 mm (what the original project used).
    "nonlinear": "T1_brain_to_MNI.nii.gz",
}
DEPRESSED = (3, 4, 5)  # recurrent severe, recurrent moderate, single episode
SEX_CODES = {0: "F", 1: "M"}
_R_SPELLING = re.compile(r"^f\.(\d+)\.(\d+)\.(\d+)$")  # f.21003.2.0 → 21003-2.0


def canonical_column(name: str) -> str:
    """`f.21003.2.0` (R export) and `21003-2.0` (ukbconv) both → `21003-2.0`; `f.eid` → `eid`."""
    name = name.strip()
    if name == "f.eid":
        return "eid"
    match = _R_SPELLING.match(name)
    return f"{match[1]}-{match[2]}.{match[3]}" if match else name


def read_phenotypes(path: Path) -> pd.DataFrame:
    """The needed fields of a UK Biobank table (CSV, or tab-separated `.tab`/`.tsv`/`.txt`)."""
    sep = "\t" if path.suffix in {".tab", ".tsv", ".txt"} else ","
    wanted = set(FIELDS.values())
    frame = read_table(path, "phenotype table", sep=sep,
                       usecols=lambda c: canonical_column(c) in wanted)
    frame.columns = [canonical_column(c) for c in frame.columns]
    missing = [key for key, field in FIELDS.items() if field not in frame.columns]
    required = [f"{key} ({FIELDS[key]} or f.{FIELDS[key].replace('-', '.')})"
                for key in missing if key not in OPTIONAL_FIELDS]
    if required:
        raise InputError(f"{path}: missing UK Biobank field(s): {'; '.join(required)}")
    for key in missing:
        log.warning("%s: no %s field (%s): every participant gets %s=%s", path, key,
                    FIELDS[key], key, UNKNOWN)
    return frame


def _numbers(frame: pd.DataFrame, key: str, source: Path) -> pd.Series:
    """A field as floats (NaN where empty); a non-numeric entry is an error naming its line."""
    raw = frame[FIELDS[key]].str.strip()
    values = pd.to_numeric(raw.replace({"NA": "", "nan": ""}), errors="coerce")
    bad = values.isna() & ~raw.isin(["", "NA", "nan"])
    if bad.any():
        rows = np.flatnonzero(bad.to_numpy())[:5]
        listed = ", ".join(f"line {r + 2} ({raw.iloc[r]!r})" for r in rows)
        raise InputError(f"{source}, column {FIELDS[key]}: not a number at {listed}")
    return values


def assign_groups(depression: pd.Series, diabetes: pd.Series) -> pd.Series:
    """The group of each participant (or NaN: excluded) from fields 20126-0.0 and 2976-2.0."""
    has_diabetes = diabetes.notna()
    healthy = depression == 0
    depressed = depression.isin(DEPRESSED)
    groups = pd.Series(np.nan, index=depression.index, dtype=object)
    groups[healthy & ~has_diabetes] = "HC"
    groups[depressed & ~has_diabetes] = "MDD"
    groups[healthy & has_diabetes] = "diabetes"
    groups[depressed & has_diabetes] = "dual"
    return groups


def image_path(imaging_root: Path, eid: str, image: str) -> Path:
    """The T1 of field 20252, instance 2, of participant `eid`: in the unpacked folder when
    there is one, else inside the zip as delivered (`neurocvae.data.archives`)."""
    name = f"{eid}_20252_2_0"
    folder = imaging_root / name
    base = folder if folder.is_dir() else imaging_root / f"{name}{ARCHIVE_SUFFIX}"
    return base / "T1" / IMAGES[image]


def build_ukbb_manifest(phenotypes: Path, imaging_root: Path, *, image: str = "linear"
                        ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return `(manifest, excluded)`; `excluded` has `eid, reason`.

    The manifest keeps the raw fields as extra columns (`depression_20126`, `diabetes_2976`).
    """
    if image not in IMAGES:
        raise InputError(f"image={image!r}: expected one of {tuple(IMAGES)}")
    if not imaging_root.is_dir():
        raise InputError(f"{imaging_root}: no such imaging folder")
    table = read_phenotypes(phenotypes)
    eid = table[FIELDS["eid"]].str.strip()
    age = _numbers(table, "age", phenotypes)
    depression = _numbers(table, "depression", phenotypes)
    diabetes = _numbers(table, "diabetes", phenotypes)
    unknown = pd.Series(UNKNOWN, index=table.index)
    sex = (_numbers(table, "sex", phenotypes).map(SEX_CODES) if FIELDS["sex"] in table
           else unknown)
    site = table[FIELDS["site"]].str.strip() if FIELDS["site"] in table else unknown
    group = assign_groups(depression, diabetes)
    paths = pd.Series([image_path(imaging_root, e, image) for e in eid], index=table.index)

    reasons = pd.Series("", index=table.index)
    reasons[~paths.map(scan_exists)] = f"no image {IMAGES[image]}"
    reasons[site == ""] = "no assessment centre (54-2.0)"
    reasons[sex.isna()] = "no sex (31-0.0)"
    reasons[age.isna()] = "no age at the imaging visit (21003-2.0)"
    reasons[depression.isin((1, 2))] = "bipolar (20126-0.0 is 1 or 2)"
    reasons[group.isna() & (reasons == "")] = "no depression status (20126-0.0)"
    kept = reasons == ""
    manifest = pd.DataFrame({
        "subject_id": eid, "path": paths.astype(str), "age": age, "sex": sex,
        "group": group, "site": site,
        "depression_20126": depression, "diabetes_2976": diabetes,
    })[kept].reset_index(drop=True)
    excluded = pd.DataFrame({"eid": eid[~kept], "reason": reasons[~kept]}).reset_index(drop=True)
    return manifest, excluded
