"""The UK Biobank adapter on a hand-made phenotype table and imaging tree."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from neurocvae.cli.ukbb_manifest import ukbb_manifest
from neurocvae.data.cohort import read_manifest
from neurocvae.data.ukbb import IMAGES, build_ukbb_manifest, canonical_column
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
    table.drop(columns=["31-0.0"]).to_csv(phenotypes, index=False)
    with pytest.raises(InputError, match=r"missing UK Biobank field\(s\): sex \(31-0.0"):
        build_ukbb_manifest(phenotypes, root)
    table.loc[3, "21003-2.0"] = "sixty"
    table.to_csv(phenotypes, index=False)
    with pytest.raises(InputError, match=r"column 21003-2.0: not a number at line 5 \('sixty'\)"):
        build_ukbb_manifest(phenotypes, root)


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
