"""The volume cache: same values as the uncached pipeline, keyed by settings and sources."""

import fcntl
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

from neurocvae.data.cache import _locked, describe, open_or_build, prune
from neurocvae.data.cohort import read_manifest
from neurocvae.data.volumes import Preprocessing
from neurocvae.errors import InputError
from tests.data.conftest import brain, write_nifti, write_with_sform

PREP = Preprocessing(shape=(10, 12, 8))


def paths_of(manifest):
    return read_manifest(manifest)["path"].tolist()


def entries(cache_dir):
    return sorted(p.name for p in cache_dir.iterdir() if p.is_dir())


def test_the_cache_returns_what_the_pipeline_computes(tiny_cohort, tmp_path):
    paths = paths_of(tiny_cohort)
    cache = open_or_build(paths, PREP, tmp_path / "cache", workers=2)
    assert cache.array.dtype == np.float16 and cache.array.shape == (24, 10, 12, 8)
    for path in paths:
        expected = PREP(path)
        torch.testing.assert_close(cache.read(path), expected.half(), rtol=0, atol=0)
        torch.testing.assert_close(cache.read(path).float(), expected, rtol=1e-3, atol=1e-3)


def test_a_changed_setting_or_source_rebuilds_and_a_subset_reuses(tiny_cohort, tmp_path):
    paths, cache_dir = paths_of(tiny_cohort), tmp_path / "cache"
    first = open_or_build(paths, PREP, cache_dir)
    assert open_or_build(paths[:5], PREP, cache_dir).folder == first.folder  # a subset
    zscore = open_or_build(paths, Preprocessing(shape=(10, 12, 8), normalise="zscore_brain"),
                           cache_dir)
    assert zscore.folder != first.folder
    # minmax_global is applied when reading: it shares the `mean` entry
    minmax = Preprocessing(shape=(10, 12, 8), normalise="minmax_global")
    assert open_or_build(paths, minmax, cache_dir).folder == first.folder
    write_nifti(tiny_cohort.parent / "volumes" / "s003.nii.gz", 2 * brain(3))
    os.utime(paths[3], ns=(1, 1))  # a different modification time, whatever the clock
    rebuilt = open_or_build(paths, PREP, cache_dir)
    assert rebuilt.folder not in (first.folder, zscore.folder)
    torch.testing.assert_close(rebuilt.read(paths[3]), PREP(paths[3]).half())
    assert len(entries(cache_dir)) == 3


def test_bad_volumes_are_all_listed_or_skipped_into_rejected(tiny_cohort, tmp_path):
    paths, cache_dir = paths_of(tiny_cohort), tmp_path / "cache"
    write_nifti(paths[1], np.zeros((12, 14, 10)))
    write_nifti(paths[2], brain(2, shape=(12, 14, 11)))
    with pytest.raises(InputError, match="2 bad volume") as raised:
        open_or_build(paths, PREP, cache_dir)
    message = str(raised.value)
    assert f"{paths[1]}: all voxels are zero" in message
    assert f"{paths[2]}: shape 12×14×11 differs from the 12×14×10 of the other volumes" in message
    cache = open_or_build(paths, PREP, cache_dir, skip_bad=True)
    assert paths[1] not in cache and paths[2] not in cache and paths[0] in cache
    assert sorted(cache.rejected["path"]) == sorted(paths[1:3])
    assert (cache.folder / "rejected.csv").is_file()


@pytest.mark.parametrize("sform", [np.zeros((4, 4)), np.diag([2.0, 2.0, 0.0, 1.0])],
                         ids=["zero", "singular"])
def test_a_volume_without_orientation_is_a_named_bad_volume(tiny_cohort, tmp_path, sform):
    paths, cache_dir = paths_of(tiny_cohort), tmp_path / "cache"
    write_with_sform(paths[1], brain(1), sform)
    with pytest.raises(InputError, match="1 bad volume") as raised:
        open_or_build(paths, PREP, cache_dir, workers=2)
    assert f"{paths[1]}: singular affine" in str(raised.value)
    cache = open_or_build(paths, PREP, cache_dir, skip_bad=True)
    assert paths[1] not in cache and paths[0] in cache
    assert not list(cache_dir.glob("*.partial"))


def test_a_failed_build_leaves_no_partial_entry(tiny_cohort, tmp_path, monkeypatch):
    def broken(transform, path):
        raise RuntimeError("a worker's failure")

    monkeypatch.setattr("neurocvae.data.cache.preprocess", broken)
    with pytest.raises(RuntimeError, match="a worker's failure"):
        open_or_build(paths_of(tiny_cohort), PREP, tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*.partial"))


def test_readers_do_not_copy_the_array(tiny_cohort, tmp_path):
    cache = open_or_build(paths_of(tiny_cohort), PREP, tmp_path / "cache")
    cache.read(cache.index["path"][0])
    assert len(pickle.dumps(cache)) < cache.array.nbytes / 4
    assert isinstance(cache.array, np.memmap)


def _build(args):
    paths, cache_dir = args
    return str(open_or_build(paths, PREP, cache_dir).folder)


def test_concurrent_builders_make_one_entry(tiny_cohort, tmp_path):
    paths, cache_dir = paths_of(tiny_cohort), tmp_path / "cache"
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        folders = pool.map(_build, [(paths, cache_dir)] * 2)
    assert folders[0] == folders[1]
    assert len(entries(cache_dir)) == 1


BUILD = """
import sys
from neurocvae.data.cache import _locked, describe, open_or_build, prune
from neurocvae.data.volumes import Preprocessing
paths = sys.argv[2:]
open_or_build(paths, Preprocessing(shape=(40, 48, 40)), sys.argv[1], workers=2)
"""


@pytest.mark.slow
def test_a_run_killed_while_building_does_not_block_the_next(tmp_path):
    """SIGKILL of the building process mid-build: its workers die with it and hold no lock, so
    a rerun finishes (volumes larger than a pipe's buffer once left workers blocked forever)."""
    paths = [str(write_nifti(tmp_path / f"v{i}.nii.gz", brain(i, (40, 48, 40))))
             for i in range(120)]
    cache_dir = tmp_path / "cache"
    build = subprocess.Popen([sys.executable, "-c", BUILD, str(cache_dir), *paths])
    deadline = time.monotonic() + 120
    while not list(cache_dir.glob("*.partial/volumes.npy")):
        assert build.poll() is None and time.monotonic() < deadline, "the build never started"
        time.sleep(0.05)
    build.send_signal(signal.SIGKILL)
    build.wait()
    rerun = subprocess.run([sys.executable, "-c", BUILD, str(cache_dir), *paths],
                           capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert len(open_or_build(paths, Preprocessing(shape=(40, 48, 40)), cache_dir).array) == 120


def test_a_waiting_run_names_the_lock_and_its_holder(tmp_path, caplog):
    lock = tmp_path / "entry.lock"
    acquired = threading.Event()

    def wait_for_the_lock():
        with _locked(lock):
            acquired.set()

    with _locked(lock):
        waiter = threading.Thread(target=wait_for_the_lock)
        waiter.start()
        deadline = time.monotonic() + 10
        while "waiting for" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not acquired.is_set()
    waiter.join(10)
    assert acquired.is_set()
    assert f"waiting for {lock}: another run (PID {os.getpid()}) is building" in caplog.text


def test_a_lock_whose_holder_died_is_replaced(tmp_path, caplog):
    """An orphan keeps the lock of a run that was killed: the file names a dead PID, and the
    next run replaces the lock instead of waiting for ever."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    lock = tmp_path / "entry.lock"
    lock.write_text(dead + "\n")
    with open(lock) as orphan:  # stands for the orphan's inherited descriptor
        fcntl.flock(orphan, fcntl.LOCK_EX)
        done = threading.Event()

        def take_it():
            with _locked(lock):
                done.set()

        taker = threading.Thread(target=take_it, daemon=True)
        taker.start()
        taker.join(10)
        assert done.is_set()
    assert f"its holder (PID {dead}) has died" in caplog.text


def volume_bytes(cache_dir):
    return sum(f.stat().st_size for f in cache_dir.rglob("volumes.npy"))


def test_overlapping_manifests_share_one_entry(tiny_cohort, tmp_path):
    """Manifests A (16 scans) and B (16, 8 shared): B's entry also takes A's volumes (copied,
    the same values) and replaces it, so the disk holds 24 volumes, not 32."""
    paths, cache_dir = paths_of(tiny_cohort), tmp_path / "cache"
    first = open_or_build(paths[:16], PREP, cache_dir)
    one_volume = first.nbytes_per_volume
    first.release()
    second = open_or_build(paths[8:], PREP, cache_dir)
    assert entries(cache_dir) == [second.folder.name]
    assert all(path in second for path in paths)
    for path in (paths[0], paths[12], paths[20]):
        torch.testing.assert_close(second.read(path), PREP(path).half(), rtol=0, atol=0)
    assert open_or_build(paths[:16], PREP, cache_dir).folder == second.folder
    assert len(second.array) == 24 and volume_bytes(cache_dir) < 25 * one_volume


def test_an_entry_a_job_holds_is_kept_until_pruned(tiny_cohort, tmp_path):
    paths, cache_dir = paths_of(tiny_cohort), tmp_path / "cache"
    held = open_or_build(paths[:16], PREP, cache_dir)  # a running job's entry
    second = open_or_build(paths[8:], PREP, cache_dir)
    assert held.folder.is_dir() and len(entries(cache_dir)) == 2
    assert prune(cache_dir) == [] and held.folder.is_dir()
    held.release()  # the job ends
    second.release()
    assert prune(cache_dir) == [held.folder] and entries(cache_dir) == [second.folder.name]
    listing = describe(cache_dir)
    assert listing["volumes"].tolist() == [24] and not listing["in_use"].any()
    assert prune(cache_dir, unused_days=0) == [second.folder] and entries(cache_dir) == []
