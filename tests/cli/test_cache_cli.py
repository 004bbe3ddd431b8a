"""`neurocvae-cache`: the installed command lists a cache's entries and prunes them."""

import subprocess
import sys
from pathlib import Path

import pytest

from neurocvae.data.cache import open_or_build
from neurocvae.data.cohort import read_manifest
from neurocvae.data.volumes import Preprocessing
from tests.data.conftest import write_cohort

COMMAND = Path(sys.executable).with_name("neurocvae-cache")


@pytest.mark.slow
def test_the_command_lists_and_prunes(tmp_path):
    write_cohort(tmp_path, ["HC"] * 8)
    paths = read_manifest(tmp_path / "manifest.csv")["path"].tolist()
    cache_dir = tmp_path / "cache"
    open_or_build(paths, Preprocessing(shape=(10, 12, 8)), cache_dir).release()
    open_or_build(paths[:4], Preprocessing(shape=(8, 8, 8)), cache_dir).release()
    (cache_dir / "0123456789abcdef-feedbeef.partial").mkdir()  # a build killed long ago

    listed = subprocess.run([str(COMMAND), f"cache_dir={cache_dir}"], capture_output=True,
                            text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.strip().splitlines()
    assert lines[0].split()[:2] == ["entry", "settings"] and len(lines) == 3
    assert '"shape": [10, 12, 8]' in listed.stdout and '"shape": [8, 8, 8]' in listed.stdout

    pruned = subprocess.run([str(COMMAND), f"cache_dir={cache_dir}", "prune=true",
                             "unused_days=0"], capture_output=True, text=True, timeout=120)
    assert pruned.returncode == 0, pruned.stderr
    assert "removed 3 folder(s)" in pruned.stdout  # two entries unused for 0 days, the build
    assert "no cache entries" in pruned.stdout
    assert {p.suffix for p in cache_dir.iterdir()} == {".lock"}


@pytest.mark.slow
def test_a_missing_folder_is_one_clear_line(tmp_path):
    result = subprocess.run([str(COMMAND), f"cache_dir={tmp_path / 'nowhere'}"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "no such folder" in result.stderr
    assert "Traceback" not in result.stderr
