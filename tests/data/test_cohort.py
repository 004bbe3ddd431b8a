"""Manifest validation: every problem named by file, line and column, all at once."""

import pandas as pd
import pytest

from neurocvae.data.cohort import UNKNOWN, check_disjoint, read_manifest
from neurocvae.errors import InputError


def test_a_valid_manifest_reads_with_absolute_paths_and_extra_columns(tiny_cohort):
    table = pd.read_csv(tiny_cohort)
    table["handedness"] = "R"
    table.to_csv(tiny_cohort, index=False)
    manifest = read_manifest(tiny_cohort)
    assert len(manifest) == 24
    assert manifest["path"].iloc[0] == str(tiny_cohort.parent / "volumes" / "s000.nii.gz")
    assert manifest["age"].dtype == float
    assert (manifest["handedness"] == "R").all()


@pytest.mark.parametrize(("column", "value", "message"), [
    ("age", "", "line 4, column age: missing"),
    ("age", "fifty", "line 4, column age: 'fifty' is not a number"),
    ("age", "nan", "line 4, column age: 'nan' is not a number"),
    ("group", "", "line 4, column group: ''; expected a group name"),
    ("group", "MDD ", "line 4, column group: 'MDD '; expected a group name"),
    ("sex", "X", "line 4, column sex: 'X'"),
    ("site", " ", "line 4, column site: empty"),
    ("path", "volumes/missing.nii.gz", "line 4, column path: no such file"),
    ("subject_id", "s000", "line 4, column subject_id: 's000' is a duplicate of line 2"),
    ("age", "-5", "line 4, column age: -5 is outside 0–130 years"),
    ("age", "300", "line 4, column age: 300 is outside 0–130 years"),
])
def test_each_bad_cell_is_named(tiny_cohort, column, value, message):
    table = pd.read_csv(tiny_cohort, dtype=str, keep_default_na=False)
    table.loc[2, column] = value
    table.to_csv(tiny_cohort, index=False)
    with pytest.raises(InputError) as raised:
        read_manifest(tiny_cohort)
    assert str(tiny_cohort) in str(raised.value)
    assert message in str(raised.value)


def test_all_problems_are_reported_together(tiny_cohort):
    table = pd.read_csv(tiny_cohort, dtype=str, keep_default_na=False)
    table.loc[0, "age"] = "old"
    table.loc[5, "group"] = ""
    table.to_csv(tiny_cohort, index=False)
    with pytest.raises(InputError, match="2 problem") as raised:
        read_manifest(tiny_cohort)
    assert "line 2, column age" in str(raised.value)
    assert "line 7, column group" in str(raised.value)


def test_a_table_without_rows_is_refused(tmp_path):
    (tmp_path / "empty.csv").write_text("subject_id,path,age,sex,group,site\n")
    with pytest.raises(InputError, match=r"empty\.csv: no rows"):
        read_manifest(tmp_path / "empty.csv")


def test_missing_columns_are_listed(tiny_cohort):
    pd.read_csv(tiny_cohort).drop(columns=["age", "group"]).to_csv(tiny_cohort, index=False)
    with pytest.raises(InputError, match=r"missing column\(s\) age, group; .* may have sex, site"):
        read_manifest(tiny_cohort)


def test_a_table_without_sex_and_site_reads_with_the_placeholder_and_a_warning(tiny_cohort,
                                                                                caplog):
    pd.read_csv(tiny_cohort).drop(columns=["site", "sex"]).to_csv(tiny_cohort, index=False)
    manifest = read_manifest(tiny_cohort)
    assert (manifest["sex"] == UNKNOWN).all() and (manifest["site"] == UNKNOWN).all()
    assert "no sex column" in caplog.text and "no site column" in caplog.text


def test_ages_and_groups_are_optional_only_for_prediction(tiny_cohort):
    table = pd.read_csv(tiny_cohort, dtype=str, keep_default_na=False).drop(columns=["group"])
    table.loc[2, "age"] = ""
    table.to_csv(tiny_cohort, index=False)
    with pytest.raises(InputError, match=r"missing column\(s\) group"):
        read_manifest(tiny_cohort)
    unlabelled = read_manifest(tiny_cohort, labelled=False)
    assert (unlabelled["group"] == UNKNOWN).all()
    assert unlabelled["age"].isna().tolist() == [i == 2 for i in range(len(table))]


def test_a_subject_in_target_and_background_is_refused(tiny_cohort):
    manifest = read_manifest(tiny_cohort)
    target, background = manifest.iloc[:10], manifest.iloc[8:]
    with pytest.raises(InputError, match="2 subject_id"):
        check_disjoint({"target.csv": target, "background.csv": background})
    check_disjoint({"target.csv": manifest.iloc[:8], "background.csv": background})
