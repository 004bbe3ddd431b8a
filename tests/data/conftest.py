"""Tiny cohorts written in each test: a few 12×14×10 NIfTI volumes and their manifest."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

SHAPE = (12, 14, 10)
RAS_2MM = np.diag([2.0, 2.0, 2.0, 1.0])


def write_nifti(path: Path | str, data: np.ndarray, affine: np.ndarray = RAS_2MM) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine), str(path))
    return path


def write_with_sform(path: Path | str, data: np.ndarray, sform: np.ndarray) -> Path:
    """A NIfTI whose header holds `sform` (code 1) and no qform, however broken the matrix."""
    header = nib.Nifti1Image(np.asarray(data, dtype=np.float32), RAS_2MM).header
    header.set_sform(sform, code=1)
    header.set_qform(None, code=0)
    nib.save(nib.Nifti1Image(np.asarray(data, dtype=np.float32), None, header=header), str(path))
    return Path(path)


def brain(seed: int, shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    """A positive blob in a zero background, different for each seed."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    inside = (grid**2).sum(0) < 0.8
    return np.where(inside, 100 + 20 * rng.random(shape), 0.0)


def write_cohort(folder: Path, groups: list[str], *, start: int = 0,
                 shape: tuple[int, ...] = SHAPE) -> pd.DataFrame:
    """`len(groups)` volumes of `shape` under folder/volumes and a manifest.csv (paths
    relative)."""
    rows = []
    for k, group in enumerate(groups, start=start):
        name = f"volumes/s{k:03d}.nii.gz"
        write_nifti(folder / name, brain(k, shape))
        rows.append({"subject_id": f"s{k:03d}", "path": name, "age": 50 + k % 30,
                     "sex": "FM"[k % 2], "group": group, "site": f"S{k % 2 + 1}"})
    table = pd.DataFrame(rows)
    table.to_csv(folder / "manifest.csv", index=False)
    return table


@pytest.fixture
def tiny_cohort(tmp_path) -> Path:
    """24 subjects (12 HC, 4 each of MDD, diabetes, dual), two sites; returns manifest.csv."""
    write_cohort(tmp_path, ["HC"] * 12 + ["MDD", "diabetes", "dual"] * 4)
    return tmp_path / "manifest.csv"
