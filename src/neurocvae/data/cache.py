"""An on-disk cache of preprocessed volumes: one memory-mapped float16 `.npy` array.

Why a plain `.npy` memory map (rather than HDF5 or zarr): reading a volume is one contiguous
slice served by the operating system's page cache, at memory speed, with no decompression and
no library state. Any number of readers (dataloader workers, DDP ranks, other jobs) open it
read-only and independently, which HDF5 handles are not safe to do across `fork`. Pages are
loaded on demand and evicted under memory pressure, so memory stays flat as the cohort grows.

Layout of one entry, `<cache_dir>/<settings hash>-<sources hash>/`:

    volumes.npy    float16 [N, X, Y, Z]; row i is source i of index.csv
    index.csv      path, size, mtime_ns (the source's fingerprint), min, max (after preprocessing)
    rejected.csv   path, problem (only when bad volumes were skipped)
    settings.json  the preprocessing settings

A changed setting or a changed source file (size or modification time) gives another key; an
entry that covers a superset of the requested files is reused. Asked for volumes no entry
holds, the new entry also takes the unchanged volumes of the earlier entries with the same
settings (copied, not recomputed), and the superseded entries are removed unless a running job
holds them: one entry per settings, as large as the volumes ever asked for. `describe` lists
the entries and `prune` removes old ones (`neurocvae-cache`). An entry is built in a
`.partial` folder under a file lock and renamed into place when complete; a run that waits for
the lock says so and for whom, and a lock left held by an orphan of a killed run is replaced.
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import hashlib
import json
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from neurocvae.data.archives import source_stat
from neurocvae.data.cohort import problem_list
from neurocvae.data.volumes import Preprocessing, VolumeError, preprocess, read_shape
from neurocvae.data.workers import one_by_one
from neurocvae.errors import InputError
from neurocvae.progress import progress

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies


def fingerprint(path: str) -> tuple[str, int, int]:
    """`(path, size, mtime_ns)` of a source file (of its archive for a member of a zip): a
    changed file gets a new cache key."""
    stat = source_stat(path)
    return path, stat.st_size, stat.st_mtime_ns


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


class VolumeCache:
    """Read access to one complete cache entry; cheap to pickle into worker processes."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.index = pd.read_csv(folder / "index.csv")
        self.rejected = pd.read_csv(folder / "rejected.csv")
        bad = set(self.rejected["path"])
        self._rows = {p: i for i, p in enumerate(self.index["path"]) if p not in bad}
        self._array: np.ndarray | None = None
        self._hold()

    def _hold(self) -> None:
        """A shared lock on the entry for this object's life (and its process's): an entry in
        use is never removed (`remove_if_unused`)."""
        self._in_use = open(self.folder / "index.csv", "rb")  # noqa: SIM115 (held open)
        fcntl.flock(self._in_use, fcntl.LOCK_SH)

    def __getstate__(self) -> dict:  # each process maps the file and holds the entry itself
        return {key: value for key, value in self.__dict__.items()
                if key not in ("_array", "_in_use")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _array=None)
        self._hold()

    def release(self) -> None:
        self._array = None
        self._in_use.close()

    def remove_if_unused(self) -> bool:
        """Delete the entry unless another `VolumeCache` (in any process) holds it."""
        self.release()
        with open(self.folder / "index.csv", "rb") as handle:
            if not _try_lock(handle.fileno()):
                return False
            shutil.rmtree(self.folder)
        return True

    @property
    def sources(self) -> list[tuple[str, int, int]]:
        """`(path, size, mtime_ns)` of every source the entry was built from."""
        index = self.index
        return list(zip(index["path"], index["size"].astype(int), index["mtime_ns"].astype(int),
                        strict=True))

    @property
    def array(self) -> np.ndarray:
        """float16 [N, X, Y, Z], memory-mapped (copy-on-write: the file is never modified, and
        torch can wrap a row without copying it)."""
        if self._array is None:
            self._array = np.load(self.folder / "volumes.npy", mmap_mode="c")
        return self._array

    def covers(self, sources: list[tuple[str, int, int]]) -> bool:
        """Whether every `(path, size, mtime_ns)` was cached here (usable or rejected)."""
        return set(sources) <= set(self.sources)

    def __contains__(self, path: str) -> bool:
        return path in self._rows

    def row(self, path: str) -> int:
        return self._rows[path]

    def read(self, path: str) -> torch.Tensor:
        """The cached volume of `path`, float16 [1, X, Y, Z]: a view of the memory map, no copy
        (copy-on-write, so writing to it never changes the file)."""
        return torch.from_numpy(self.array[self._rows[path]])[None]

    @property
    def nbytes_per_volume(self) -> int:
        return int(np.prod(self.array.shape[1:])) * self.array.itemsize


def open_or_build(paths: Sequence[str], preprocessing: Preprocessing, cache_dir: str | Path, *,
                  workers: int = 0, skip_bad: bool = False) -> VolumeCache:
    """The cache entry holding `paths` (absolute) under `preprocessing`, built if needed.

    Bad volumes (unreadable, 4-D, NaN/inf, all zero, a shape unlike the rest) raise one
    `InputError` listing each path and its problem, or with `skip_bad` are left out and listed
    in the entry's `rejected.csv` (also `VolumeCache.rejected`).
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    sources = [fingerprint(p) for p in paths]
    settings = preprocessing.cache_settings()
    prefix = _digest(settings)
    lock_path = cache_dir / f"{prefix}.lock"
    with _locked(lock_path) as lock_fd:
        older = entries(cache_dir, prefix)
        cache = next((entry for entry in older if entry.covers(sources)), None)
        if cache is None:  # one entry grows to hold every volume asked for under the settings
            merged = _still_current(sources, older)
            folder = cache_dir / f"{prefix}-{_digest(sorted(merged))}"
            _build(folder, merged, preprocessing, reuse=older, workers=workers,
                   worker_init_fn=functools.partial(_close_in_worker, lock_path, lock_fd))
            cache = VolumeCache(folder)
            for entry in older:  # superseded: removed unless a running job holds it
                entry.remove_if_unused()
        for entry in older:
            if entry is not cache:
                entry.release()
    with suppress(OSError):  # when last used, for `neurocvae-cache`
        os.utime(cache.folder)
    _check_rejected(cache, paths, skip_bad)
    return cache


def entries(cache_dir: Path, prefix: str = "") -> list[VolumeCache]:
    """The complete entries under `cache_dir` (with settings digest `prefix`, if given)."""
    found = []
    for folder in sorted(cache_dir.glob(f"{prefix}*-*")):
        if folder.is_dir() and folder.suffix != ".partial" and (folder / "index.csv").is_file():
            with suppress(FileNotFoundError):  # removed meanwhile by another run
                found.append(VolumeCache(folder))
    return found


def _still_current(sources: list[tuple[str, int, int]], older: list[VolumeCache]
                   ) -> list[tuple[str, int, int]]:
    """`sources`, then the sources of the `older` entries that are not among them and whose
    file is unchanged."""
    merged, seen = list(sources), {path for path, _, _ in sources}
    for entry in older:
        for source in entry.sources:
            if source[0] not in seen:
                seen.add(source[0])
                with suppress(OSError):
                    if fingerprint(source[0]) == source:
                        merged.append(source)
    return merged


def _check_rejected(cache: VolumeCache, paths: Sequence[str], skip_bad: bool) -> None:
    bad = cache.rejected[cache.rejected["path"].isin(set(paths))]
    if len(bad) and not skip_bad:
        problems = [f"{p}: {why}" for p, why in zip(bad["path"], bad["problem"], strict=True)]
        raise InputError(f"{len(bad)} bad volume(s) (set skip_bad=true to leave them out and "
                         f"list them in rejected.csv)\n{problem_list(problems)}")
    if len(bad):
        log.warning("%d bad volume(s) left out; see %s", len(bad), cache.folder / "rejected.csv")


@contextmanager
def _locked(lock_path: Path) -> Iterator[int]:
    """An exclusive advisory lock on `lock_path`: one builder per entry; others say what they
    wait for, wait, and then reuse the entry. Yields the lock's file descriptor (workers close
    their inherited copy, `_close_in_worker`). The holder writes its PID into the file. A lock
    still held after its recorded holder has died (by an orphan of a killed run) is stale: the
    file is replaced, and the orphan keeps a lock on a file nobody uses."""
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            if not _try_lock(fd):
                holder = _holder(fd)
                if holder is not None and not _alive(holder):
                    log.warning("%s: its holder (PID %d) has died but an orphan still holds it; "
                                "replacing the stale lock", lock_path, holder)
                    _unlink_if_same(lock_path, fd)
                    continue
                log.warning("waiting for %s: another run (PID %s) is building this cache "
                            "entry", lock_path, holder if holder is not None else "unknown")
                fcntl.flock(fd, fcntl.LOCK_EX)
            if not _same_file(lock_path, fd):  # replaced as stale while we waited: try again
                continue
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            try:
                yield fd
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
            return
        finally:
            os.close(fd)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _holder(fd: int) -> int | None:
    """The PID written into a lock file by its holder (None if none is)."""
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _same_file(path: Path, fd: int) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _unlink_if_same(path: Path, fd: int) -> None:
    if _same_file(path, fd):
        path.unlink(missing_ok=True)


def _close_in_worker(lock_path: Path, lock_fd: int, worker_id: int) -> None:
    """A cache-building worker dies with its parent (Linux) and never holds the parent's lock:
    a worker that outlived a killed run would otherwise block every later run."""
    with suppress(OSError):
        if _same_file(lock_path, lock_fd):  # a forked worker's copy (a spawned one has none)
            os.close(lock_fd)
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() == 1:  # the parent died before prctl took effect
            os._exit(1)


class _PreprocessedSources(Dataset):
    """Preprocess source i; a bad volume yields its problem instead of raising in a worker."""

    def __init__(self, paths: Sequence[str], preprocessing: Preprocessing) -> None:
        self.paths, self.transform = list(paths), preprocessing.transform()

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray | None, str]:
        try:
            image = preprocess(self.transform, self.paths[i]).as_tensor()
        except VolumeError as error:
            return i, None, error.problem
        return i, image[0].numpy().astype(np.float16), ""


def _shape_problems(paths: Sequence[str], preprocessing: Preprocessing) -> dict[str, str]:
    """Sources whose grid differs from the most common one (when no resampling is asked)."""
    problems: dict[str, str] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    for path in paths:
        try:
            shapes[path] = read_shape(path)[:3]
        except VolumeError as error:
            problems[path] = error.problem
    if preprocessing.voxel_size is None and shapes:
        values, counts = np.unique(list(shapes.values()), axis=0, return_counts=True)
        common = tuple(int(v) for v in values[counts.argmax()])
        for path, shape in shapes.items():
            if shape != common:
                problems[path] = (f"shape {'×'.join(map(str, shape))} differs from the "
                                  f"{'×'.join(map(str, common))} of the other volumes")
    return problems


def _build(folder: Path, sources: list[tuple[str, int, int]], preprocessing: Preprocessing, *,
           reuse: Sequence[VolumeCache] = (), workers: int,
           worker_init_fn: Callable[[int], None] | None = None) -> None:
    """Write the entry into `<folder>.partial` and rename it into place; on any failure the
    partial folder is removed."""
    partial = folder.with_suffix(".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        _write_entry(partial, sources, preprocessing, reuse=reuse, workers=workers,
                     worker_init_fn=worker_init_fn)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    partial.rename(folder)


def _write_entry(partial: Path, sources: list[tuple[str, int, int]],
                 preprocessing: Preprocessing, *, reuse: Sequence[VolumeCache],
                 workers: int, worker_init_fn: Callable[[int], None] | None) -> None:
    """Fill `partial`: rows of unchanged sources are copied from the `reuse` entries (same
    settings), the others preprocessed by `workers` processes."""
    paths = [p for p, _, _ in sources]
    rejected = _shape_problems(paths, preprocessing)
    array = None
    minima = np.full(len(paths), np.nan)
    maxima = np.full(len(paths), np.nan)
    cached = {source: (entry, entry.row(source[0])) for entry in reuse
              for source in entry.sources if source[0] in entry}
    copied = [i for i, source in enumerate(sources) if source in cached]
    if copied:
        first = cached[sources[copied[0]]][0]
        array = np.lib.format.open_memmap(partial / "volumes.npy", mode="w+", dtype=np.float16,
                                          shape=(len(paths), *first.array.shape[1:]))
        for i in copied:
            entry, row = cached[sources[i]]
            array[i] = entry.array[row]
            rows = entry.index.iloc[row]
            minima[i], maxima[i] = rows["min"], rows["max"]
        log.info("%d volumes copied from earlier cache entries", len(copied))
    done = set(copied)
    good = [i for i, p in enumerate(paths) if p not in rejected and i not in done]
    loader = one_by_one(torch.utils.data.Subset(_PreprocessedSources(paths, preprocessing), good),
                        workers, worker_init_fn=worker_init_fn)
    log.info("caching %d volumes into %s", len(good), partial.with_suffix(""))
    with progress("caching volumes", total=len(good)) as advance:
        for i, volume, problem in loader:
            advance()
            if volume is None:
                rejected[paths[i]] = problem
                continue
            if array is None:
                array = np.lib.format.open_memmap(partial / "volumes.npy", mode="w+",
                                                  dtype=np.float16,
                                                  shape=(len(paths), *volume.shape))
            elif volume.shape != array.shape[1:]:
                rejected[paths[i]] = (f"shape {volume.shape} after preprocessing differs from "
                                      f"{array.shape[1:]}: set data.preprocessing.shape")
                continue
            array[i] = volume
            minima[i], maxima[i] = volume.min(), volume.max()
    if array is None:
        raise InputError("no usable volume:\n" + problem_list(
            [f"{p}: {why}" for p, why in rejected.items()]))
    array.flush()
    del array
    pd.DataFrame({
        "path": paths,
        "size": [s for _, s, _ in sources],
        "mtime_ns": [m for _, _, m in sources],
        "min": minima, "max": maxima,
    }).to_csv(partial / "index.csv", index=False)
    # Rejected sources stay in index.csv (their fingerprints say what the entry covers) with an
    # empty min/max; rejected.csv says why.
    pd.DataFrame(sorted(rejected.items()), columns=["path", "problem"]).to_csv(
        partial / "rejected.csv", index=False)
    (partial / "settings.json").write_text(json.dumps(preprocessing.cache_settings(), indent=1))


def describe(cache_dir: Path) -> pd.DataFrame:
    """One row per complete entry: `entry`, `settings` (the preprocessing), `volumes`,
    `gigabytes` on disk, `last_used` (UTC), `in_use` (held by a running job)."""
    rows = []
    for entry in entries(cache_dir):
        settings = json.loads((entry.folder / "settings.json").read_text())
        size = sum(f.stat().st_size for f in entry.folder.iterdir())
        used = pd.Timestamp(entry.folder.stat().st_mtime, unit="s", tz="UTC").floor("s")
        entry.release()
        rows.append({"entry": entry.folder.name, "settings": json.dumps(settings),
                     "volumes": len(entry.index) - len(entry.rejected), "gigabytes": size / 1e9,
                     "last_used": used, "in_use": not _unused(entry.folder)})
    return pd.DataFrame(rows, columns=["entry", "settings", "volumes", "gigabytes",
                                       "last_used", "in_use"])


def _unused(folder: Path) -> bool:
    """Whether no `VolumeCache` (in any process) holds the entry in `folder`."""
    with open(folder / "index.csv", "rb") as handle:
        return _try_lock(handle.fileno())


def prune(cache_dir: Path, *, unused_days: float | None = None) -> list[Path]:
    """Remove, unless a running job holds them: entries superseded by another entry with the
    same settings, entries not used for `unused_days` (None: keep them), and `.partial`
    folders no build is writing. Returns the folders removed."""
    removed = []
    cutoff = time.time() - unused_days * 86400 if unused_days is not None else None
    prefixes = {path.name.split("-")[0].split(".")[0] for path in cache_dir.iterdir()}
    for prefix in sorted(prefixes):
        with _locked(cache_dir / f"{prefix}.lock"):  # no build of these settings runs meanwhile
            for partial in cache_dir.glob(f"{prefix}-*.partial"):
                shutil.rmtree(partial)
                removed.append(partial)
            held = entries(cache_dir, prefix)
            for entry in held:
                superseded = any(other is not entry and other.covers(entry.sources)
                                 and other.folder.exists() for other in held)
                stale = cutoff is not None and entry.folder.stat().st_mtime < cutoff
                if (superseded or stale) and entry.remove_if_unused():
                    removed.append(entry.folder)
            for entry in held:
                entry.release()
    return removed
