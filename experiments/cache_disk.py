"""Disk and time of the volume cache for two overlapping manifests: one entry per manifest
(how the cache worked before it merged entries) against one growing entry, side by side.

    .venv/bin/python experiments/cache_disk.py [COHORT_MANIFEST]   # writes results/cache_disk.md

Defaults to the demo's cohort (`make demo` first). Manifest A is the first 60 % of the scans,
B the last 60 % (a fifth of the scans in both). The 4 mm grid (40×48×40).
"""

from __future__ import annotations

import platform
import sys
import tempfile
import time
from pathlib import Path

from neurocvae.data.cache import describe, open_or_build
from neurocvae.data.cohort import read_manifest
from neurocvae.data.volumes import Preprocessing

RESULT = Path(__file__).parent / "results" / "cache_disk.md"
PREPROCESSING = Preprocessing(shape=(40, 48, 40))


def build(paths: list[str], cache_dir: Path) -> float:
    """Seconds to open or build the entry for `paths`."""
    start = time.perf_counter()
    open_or_build(paths, PREPROCESSING, cache_dir, workers=2).release()
    return time.perf_counter() - start


def main() -> None:
    manifest = Path(sys.argv[1] if len(sys.argv) > 1 else "outputs/demo/cohort/manifest.csv")
    paths = read_manifest(manifest)["path"].tolist()
    cut = int(0.6 * len(paths))
    first, second = paths[:cut], paths[len(paths) - cut:]
    with tempfile.TemporaryDirectory() as folder:
        separate_a, separate_b, merged = (Path(folder) / name for name in ("a", "b", "merged"))
        times = {"separate": build(first, separate_a) + build(second, separate_b),
                 "merged": build(first, merged) + build(second, merged)}
        disk = {"separate": describe(separate_a)["gigabytes"].sum()
                + describe(separate_b)["gigabytes"].sum(),
                "merged": describe(merged)["gigabytes"].sum()}
        entries = {"separate": 2, "merged": len(describe(merged))}
    shared = len(set(first) & set(second))
    lines = [
        "# Volume cache: two overlapping manifests",
        "",
        f"Command: `.venv/bin/python experiments/cache_disk.py {manifest}` "
        f"({platform.node()}, 2 workers). Manifest A: {len(first)} scans; B: {len(second)}, "
        f"{shared} of them also in A; 4 mm, 40×48×40 float16.",
        "",
        "| cache | entries | disk (MB) | build A then B (s) |",
        "|---|---|---|---|",
        *(f"| {name} | {entries[name]} | {disk[name] * 1e3:.1f} | {times[name]:.1f} |"
          for name in ("separate", "merged")),
        "",
        "`separate`: an entry per manifest (the cache before entries were merged); `merged`: B's "
        "entry takes A's volumes (copied, not recomputed) and replaces A's entry.",
        "",
    ]
    RESULT.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
