"""End to end: the installed console script, from an unrelated working directory."""

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import counts

TINY = ["grid=ci", *counts(HC=4, MDD=2, diabetes=2, dual=2)]


def run(args, cwd):
    beside_python = Path(sys.executable).parent / "neurocvae-synth"
    exe = str(beside_python) if beside_python.is_file() else shutil.which("neurocvae-synth")
    assert exe, "neurocvae-synth is not installed"
    return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_synth_writes_a_cohort_and_its_report(tmp_path):
    result = run([*TINY, "out_dir=cohort", "workers=2"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "cohort"
    manifest = pd.read_csv(out / "manifest.csv")
    assert len(manifest) == 10
    assert all((out / p).is_file() for p in manifest["path"])
    assert f"Report: {out / 'report' / 'report.md'}" in result.stdout
    report = (out / "report" / "report.md").read_text()
    assert "## Where the variance comes from" in report and "| head size |" in report
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cohort"]  # nothing else written


@pytest.mark.slow
def test_synth_rejects_bad_input_without_a_traceback(tmp_path):
    result = run([*TINY, "groups.dual.count=-2", "out_dir=cohort"], cwd=tmp_path)
    assert result.returncode == 2
    assert "groups.dual.count: -2; expected a non-negative integer" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "cohort").exists()


@pytest.mark.slow
def test_synth_help_lists_the_recipe(tmp_path):
    result = run(["--help"], cwd=tmp_path)
    assert result.returncode == 0
    assert "grid: ci, default, full, mm3, ukbb" in result.stdout
    assert "groups:" in result.stdout and "controls: HC" in result.stdout


@pytest.mark.slow
def test_synth_refuses_a_setting_it_would_ignore(tmp_path):
    result = run([*TINY, "+site_weights=0.5", "out_dir=cohort"], cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown setting(s) ['+site_weights=0.5']: synth has no such key" in result.stderr
    assert not (tmp_path / "cohort").exists()
