"""The UK Biobank adapter on a hand-made phenotype table and imaging tree."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import torch

from neurocvae.cli.ukbb_manifest import ukbb_manifest
from neurocvae.data.cache import open_or_build
from neurocvae.data.cohort import UNKNOWN, read_manifest
from neurocvae.data.ukbb import IMAGES, build_ukbb_manifest, canonical_column
from neurocvae.data.volumes import Preprocessing
from neurocvae.errors import InputError
from tests.conftest import compose_config
from tests.data.conftest import brain, write_nifti

# eid, age, depression 20126, diabetes 2976 (age at diagnosis; -1 = do not know), sex, centre
PARTICIPANTS = [
    (1001, 60, 0, None, 1, 11025, "HC"),
    (1002, 55, 3, None, 0, 11026, "MDD"),
    (1003, 70, 4, None, 1, 11027, "MDD"),
    (1004, 66, 5, None, 0, 11025, "MDD"),
    (1005, 72, 0, 50, 1, 11026, "diabetes"),
    (1006, 64, 0, -1, 0, 11027, "diabetes"),
    (1007, 58, 3, 45, 1, 11025, "dual"),
    (1008, 61, 1, None, 0, 11025, None),  # bipolar
    (1009, 62, 2, 40, 1, 11025, None),  # bipolar, diabetic
    (1010, 63, None, None, 0, 11025, None),  # no depression status
    (1011, None, 0, None, 1, 11025, None),  # no imaging visit
    (1012, 59, 0, None, 0, 11025, None),  # no image file
]


def write_ukbb(tmp_path: Path, spelling: str) -> tuple[Path, Path]:
    fields = ["eid", "21003-2.0", "20126-0.0", "2976-2.0", "31-0.0", "54-2.0"]
    if spelling == "r":
        fields = ["f.eid"] + [f"f.{f.replace('-', '.')}" for f in fields[1:]]
    table = pd.DataFrame([p[:6] for p in PARTICIPANTS], columns=fields)
    table["f.12345.0.0" if spelling == "r" else "12345-0.0"] = 7  # an unrelated field
    phenotypes = tmp_path / "ukb.csv"
    table.to_csv(phenotypes, index=False)
    root = tmp_path / "20252"
    for k, (eid, *_) in enumerate(PARTICIPANTS[:-1]):
        for image in IMAGES.values():
            write_nifti(root / f"{eid}_20252_2_0" / "T1" / image, brain(k))
    return phenotypes, root


@pytest.mark.parametrize("spelling", ["ukbconv", "r"])
def test_group_rule_and_both_column_spellings(tmp_path, spelling):
    phenotypes, root = write_ukbb(tmp_path, spelling)
    manifest, excluded = build_ukbb_manifest(phenotypes, root)
    expected = {str(p[0]): p[6] for p in PARTICIPANTS if p[6]}
    assert dict(zip(manifest["subject_id"], manifest["group"], strict=True)) == expected
    reasons = dict(zip(excluded["eid"], excluded["reason"], strict=True))
    assert reasons["1008"].startswith("bipolar") and reasons["1009"].startswith("bipolar")
    assert reasons["1010"].startswith("no depression status")
    assert reasons["1011"].startswith("no age")
    assert reasons["1012"].startswith("no image")
    first = manifest.iloc[0]
    assert (first["sex"], first["site"], first["age"]) == ("M", "11025", 60)
    assert first["path"] == str(root / "1001_20252_2_0/T1/T1_brain_linearto_MNI.nii.gz")


def test_the_nonlinear_image_can_be_chosen(tmp_path):
    phenotypes, root = write_ukbb(tmp_path, "ukbconv")
    manifest, _ = build_ukbb_manifest(phenotypes, root, image="nonlinear")
    assert manifest["path"].str.endswith("T1/T1_brain_to_MNI.nii.gz").all()
    with pytest.raises(InputError, match="image='warped'"):
        build_ukbb_manifest(phenotypes, root, image="warped")


def test_a_missing_field_and_a_non_numeric_value_are_named(tmp_path):
    phenotypes, root = write_ukbb(tmp_path, "ukbconv")
    table = pd.read_csv(phenotypes, dtype=str)
    table.drop(columns=["21003-2.0"]).to_csv(phenotypes, index=False)
    with pytest.raises(InputError, match=r"missing UK Biobank field\(s\): age \(21003-2.0"):
        build_ukbb_manifest(phenotypes, root)
    table.loc[3, "21003-2.0"] = "sixty"
    table.to_csv(phenotypes, index=False)
    with pytest.raises(InputError, match=r"column 21003-2.0: not a number at line 5 \('sixty'\)"):
        build_ukbb_manifest(phenotypes, root)


def test_a_table_without_sex_and_centre_gives_the_placeholder_and_a_warning(tmp_path, caplog):
    phenotypes, root = write_ukbb(tmp_path, "ukbconv")
    pd.read_csv(phenotypes, dtype=str).drop(columns=["31-0.0", "54-2.0"]).to_csv(phenotypes,
                                                                                 index=False)
    manifest, excluded = build_ukbb_manifest(phenotypes, root)
    assert len(manifest) == 7 and len(excluded) == 5  # the same participants
    assert (manifest["sex"] == UNKNOWN).all() and (manifest["site"] == UNKNOWN).all()
    assert "no sex field (31-0.0)" in caplog.text and "no site field (54-2.0)" in caplog.text


def zip_folders(root: Path, eids: list[int]) -> None:
    """Pack the unpacked folders of `eids` into `<eid>_20252_2_0.zip` as UK Biobank delivers
    them, and remove the folders."""
    for eid in eids:
        folder = root / f"{eid}_20252_2_0"
        with zipfile.ZipFile(folder.with_suffix(".zip"), "w") as archive:
            for image in IMAGES.values():
                archive.write(folder / "T1" / image, f"T1/{image}")
        shutil.rmtree(folder)


def test_zips_as_delivered_are_read_in_place_voxel_for_voxel(tmp_path):
    phenotypes, root = write_ukbb(tmp_path, "ukbconv")
    unpacked, _ = build_ukbb_manifest(phenotypes, root)
    shutil.copytree(root, tmp_path / "zipped")
    zip_folders(tmp_path / "zipped", [1001, 1002, 1003, 1005])  # a mix, as a download may be
    zipped, excluded = build_ukbb_manifest(phenotypes, tmp_path / "zipped")
    assert zipped["subject_id"].tolist() == unpacked["subject_id"].tolist()
    assert len(excluded) == 5
    assert zipped["path"].iloc[0].endswith("1001_20252_2_0.zip/T1/T1_brain_linearto_MNI.nii.gz")
    preprocessing = Preprocessing(shape=(10, 12, 8))
    from_zips = open_or_build(zipped["path"].tolist(), preprocessing, tmp_path / "cache")
    from_files = open_or_build(unpacked["path"].tolist(), preprocessing, tmp_path / "cache")
    for packed, plain in zip(zipped["path"], unpacked["path"], strict=True):
        assert torch.equal(from_zips.read(packed), from_files.read(plain))


def test_a_truncated_zip_is_a_named_bad_volume(tmp_path):
    phenotypes, root = write_ukbb(tmp_path, "ukbconv")
    zip_folders(root, [1001, 1002])
    archive = root / "1002_20252_2_0.zip"
    archive.write_bytes(archive.read_bytes()[:300])
    manifest, _ = build_ukbb_manifest(phenotypes, root)
    paths = manifest["path"].tolist()
    with pytest.raises(InputError, match=r"1002_20252_2_0.zip/T1/.*truncated or corrupt zip"):
        open_or_build(paths, Preprocessing(shape=(10, 12, 8)), tmp_path / "cache")
    cache = open_or_build(paths, Preprocessing(shape=(10, 12, 8)), tmp_path / "cache",
                          skip_bad=True)
    assert cache.rejected["path"].tolist() == [paths[1]] and paths[0] in cache


def test_canonical_column_names():
    assert canonical_column("f.21003.2.0") == "21003-2.0"
    assert canonical_column("21003-2.0") == "21003-2.0"
    assert canonical_column("f.eid") == "eid"


@pytest.mark.slow
def test_the_command_writes_a_valid_manifest_and_the_exclusions(tmp_path):
    phenotypes, root = write_ukbb(tmp_path, "r")
    exe = Path(sys.executable).parent / "neurocvae-ukbb-manifest"
    args = [str(exe), f"phenotypes={phenotypes}", f"imaging_root={root}", "out=ukb/manifest.csv"]
    result = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    manifest = read_manifest(tmp_path / "ukb" / "manifest.csv")
    assert manifest["group"].value_counts().to_dict() == {"MDD": 3, "diabetes": 2, "HC": 1,
                                                          "dual": 1}
    assert len(pd.read_csv(tmp_path / "ukb" / "excluded.csv")) == 5
    again = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "overwrite=true" in again.stderr
    assert "Traceback" not in again.stderr


def test_a_relative_imaging_root_gives_paths_the_manifest_can_find(tmp_path, monkeypatch):
    _, root = write_ukbb(tmp_path, "ukbconv")
    monkeypatch.chdir(tmp_path)
    out = ukbb_manifest(compose_config("ukbb_manifest", [
        "phenotypes=ukb.csv", f"imaging_root={root.name}", "out=ukb/manifest.csv"]))
    manifest = read_manifest(out)
    assert len(manifest) == 7 and manifest["path"].str.startswith(str(root)).all()


def test_a_failed_run_leaves_nothing_behind(tmp_path, monkeypatch, capsys):
    phenotypes, root = write_ukbb(tmp_path, "ukbconv")
    table = pd.read_csv(phenotypes, dtype=str)
    table.loc[0, "21003-2.0"] = "300"  # an age nobody has: the written table is refused
    table.to_csv(phenotypes, index=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        ukbb_manifest(compose_config("ukbb_manifest", [
            f"phenotypes={phenotypes}", f"imaging_root={root}", "out=ukb/manifest.csv"]))
    error = capsys.readouterr().err
    assert "ukb/manifest.csv: 1 problem(s)" in error
    assert "column age: 300.0 is outside 0–130 years" in error
    assert list((tmp_path / "ukb").iterdir()) == []
