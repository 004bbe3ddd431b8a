"""Property-based: every generated cohort table and NIfTI file is either read correctly or
refused with an `InputError` that names the file, never another exception."""

from __future__ import annotations

import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from neurocvae.data.cohort import SEXES, read_manifest
from neurocvae.data.volumes import Preprocessing, VolumeError, load_volume
from neurocvae.errors import InputError
from tests.data.conftest import brain, write_nifti

GROUPS = ["HC", "MDD", "diabetes", "dual", "subtype 3"]  # any name a table gives
CELL = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)
AGES = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr),
                 st.integers(-1000, 1000).map(str),
                 st.sampled_from(["", " 60 ", "sixty", "1e2", "nan", "inf", "60,5"]))
HOSTILE_ROW = st.fixed_dictionaries({
    "subject_id": st.one_of(st.sampled_from(["s1", "s2", "s3", " s1 ", ""]), CELL),
    "path": st.sampled_from(["volume.nii.gz", "missing.nii.gz", "", "./volume.nii.gz"]),
    "age": AGES,
    "sex": st.one_of(st.sampled_from([*SEXES, "f", ""]), CELL),
    "group": st.one_of(st.sampled_from([*GROUPS, "hc", "", " MDD"]), CELL),
    "site": st.one_of(st.sampled_from(["S1", " ", ""]), CELL),
})
VALID_ROW = st.fixed_dictionaries({
    "subject_id": st.from_regex(r"[A-Za-z0-9_.-]{1,8}", fullmatch=True).map(lambda s: f" {s}"),
    "path": st.sampled_from(["volume.nii.gz", "./volume.nii.gz"]),
    "age": st.floats(0, 130).map(repr),
    "sex": st.sampled_from(SEXES),
    "group": st.one_of(st.sampled_from(GROUPS),
                       st.from_regex(r"[A-Za-z0-9_-]{1,8}", fullmatch=True)),
    "site": st.from_regex(r"[A-Za-zé0-9 ]{0,6}[A-Za-z0-9]", fullmatch=True),
})
ROW = st.one_of(VALID_ROW, VALID_ROW, HOSTILE_ROW)  # mostly clean rows, some hostile


def csv_cell(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(ROW, max_size=6), newline=st.sampled_from(["\n", "\r\n"]),
       encoding=st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16"]))
def test_a_cohort_table_is_read_correctly_or_refused_by_name(rows, newline, encoding):
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        write_nifti(folder / "volume.nii.gz", brain(0))
        header = "subject_id,path,age,sex,group,site"
        lines = [header] + [",".join(csv_cell(row[c]) for c in header.split(",")) for row in rows]
        table = folder / "table.csv"
        try:
            table.write_bytes((newline.join(lines) + newline).encode(encoding))
        except UnicodeEncodeError:  # a character latin-1 cannot hold: not a file anyone has
            return
        try:
            manifest = read_manifest(table)
        except InputError as error:
            assert str(table) in str(error)
            event(f"table refused ({encoding})")
            return
    event(f"table accepted ({encoding})")
    assert encoding in ("utf-8", "utf-8-sig", "latin-1")  # latin-1: when it is plain ASCII
    assert len(manifest) == len(rows) > 0
    for read, row in zip(manifest.itertuples(), rows, strict=True):
        assert read.subject_id == row["subject_id"].strip()
        assert read.age == pytest.approx(float(row["age"]))
        assert (read.sex, read.group) == (row["sex"], row["group"])
        assert Path(read.path) == folder / "volume.nii.gz"


SHAPES = st.sampled_from([(6, 7, 5), (6, 7, 5, 1), (6, 7, 5, 2), (6, 7), (1, 1, 1), (0, 4, 4)])
DTYPES = st.sampled_from([np.uint8, np.int16, np.int32, np.float32, np.float64, np.complex64])
MATRICES = st.one_of(
    st.lists(st.floats(-5, 5), min_size=9, max_size=9).map(lambda v: np.reshape(v, (3, 3))),
    st.sampled_from([np.zeros((3, 3)), np.diag([2.0, 2.0, 0.0]), np.eye(3) * np.nan,
                     np.diag([-2.0, 2.0, 2.0]), np.eye(3) * 1e-9]))
SCALES = st.sampled_from([(np.nan, np.nan), (1.0, 0.0), (0.0, 0.0), (2.5, -3.0),
                          (np.nan, 0.0), (np.inf, 0.0), (1e30, 0.0), (-1.0, 0.0)])
SCALE_OFFSET = 112  # bytes into a NIfTI-1 header: scl_slope, then scl_inter (float32 each)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=SHAPES, dtype=DTYPES, matrix=MATRICES, scale=SCALES, seed=st.integers(0, 9))
def test_a_nifti_is_read_correctly_or_refused_by_name(shape, dtype, matrix, scale, seed):
    values = np.random.default_rng(seed).uniform(0, 100, shape).astype(dtype)
    affine = np.eye(4)
    affine[:3, :3] = matrix
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "volume.nii"
        image = nib.Nifti1Image(values, np.eye(4))
        image.header.set_sform(affine, code=1)
        image.header.set_qform(None, code=0)
        nib.save(nib.Nifti1Image(values, None, header=image.header), str(path))
        with open(path, "r+b") as file:  # whatever scaling another tool may have written
            file.seek(SCALE_OFFSET)
            file.write(np.array(scale, dtype="<f4").tobytes())
        try:
            data, read_affine = load_volume(path)
            volume = Preprocessing(shape=(8, 8, 8))(path)
        except InputError as error:
            assert isinstance(error, VolumeError) and str(path) in str(error)
            event("volume refused: " + error.problem.split("(")[0].split(":")[0][:40])
            return
    event("volume accepted")
    assert data.ndim == 3 and data.dtype == np.float32 and np.isfinite(data).all()
    assert np.isfinite(read_affine).all() and abs(np.linalg.det(read_affine[:3, :3])) > 0
    assert volume.shape == (1, 8, 8, 8) and bool(volume.isfinite().all())
