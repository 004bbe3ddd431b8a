"""Volumes per second from `.nii.gz` through the full preprocessing against the warm cache.

    .venv/bin/python experiments/bench_data.py   # writes experiments/results/bench_data.md

Renders a small synthetic cohort on two grids: UK Biobank's 1 mm 182×218×182 (preprocessed to
SFCN's 160×192×160 crop) and 2 mm 80×96×80. On each, in one run and one process:
- decode: load + validate + RAS + divide by mean + crop, from the compressed NIfTI;
- cache build: the same, with 2 worker processes, written to the float16 memory map;
- cache read: float16 rows copied out of the memory map after one pass to warm the page cache
  (volumes/s and GB/s);
- loader: a `DataLoader` over the cached `VolumeDataset` (batch 4, no workers) whose batches
  are turned into float32 model inputs (`model_inputs`: on the CPU here, on the GPU there).
"""

from __future__ import annotations

import platform
import resource
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from neurocvae.config import config_dir
from neurocvae.data.cache import open_or_build
from neurocvae.data.cohort import read_manifest
from neurocvae.data.datasets import VolumeDataset, model_inputs
from neurocvae.data.volumes import Preprocessing, read_shape
from neurocvae.synthetic.recipe import Recipe
from neurocvae.synthetic.renderer import available_cores, generate_cohort

RESULT = Path(__file__).parent / "results" / "bench_data.md"
SETTINGS = {  # grid → (subjects, crop)
    "ukbb": (16, (160, 192, 160)),
    "default": (48, (80, 96, 80)),
}
CACHE_PASSES = 5


def cohort(grid: str, n: int, folder: Path) -> list[str]:
    sizes = {"HC": n // 2, "MDD": n // 4, "diabetes": n // 8, "dual": n - n // 2 - n // 4 - n // 8}
    per_group = [f"groups.{group}.count={size}" for group, size in sizes.items()]
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("synth", overrides=[f"grid={grid}", "twins=false", *per_group])
    recipe = Recipe.from_dict(OmegaConf.to_container(cfg, resolve=True))
    out = generate_cohort(recipe, folder / grid, workers=available_cores())
    return read_manifest(out / "manifest.csv")["path"].tolist()


def size(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape))


def rate(function, items, passes: int = 1) -> float:
    """Calls of `function(item)` per second; results are dropped at once, as a loader does."""
    start = time.perf_counter()
    for _ in range(passes):
        for item in items:
            function(item)
    return passes * len(items) / (time.perf_counter() - start)


def measure(grid: str, n: int, crop: tuple[int, int, int], folder: Path) -> dict:
    paths = cohort(grid, n, folder)
    prep = Preprocessing(shape=crop, normalise="mean")
    transform = prep.transform()
    decode = rate(lambda p: transform({"image": p}), paths)
    start = time.perf_counter()
    cache = open_or_build(paths, prep, folder / "cache", workers=2)
    build = n / (time.perf_counter() - start)
    dataset = VolumeDataset(read_manifest(folder / grid / "manifest.csv"), cache)
    rate(dataset.__getitem__, range(n))  # warm the page cache
    loader = DataLoader(dataset, batch_size=4, num_workers=0)
    batches = rate(lambda _: [model_inputs(b) for b in loader], range(CACHE_PASSES)) * len(loader)
    raw = rate(lambda i: cache.array[i].copy(), range(n), CACHE_PASSES)
    return {
        "grid": f"{grid}: {size(read_shape(paths[0]))} → {size(crop)}",
        "decode": decode, "build": build, "cache": raw, "loader": batches * 4,
        "gbps": raw * cache.nbytes_per_volume / 1e9,
        "mb": cache.nbytes_per_volume / 1e6,
    }


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for grid, (n, crop) in SETTINGS.items():
            r = measure(grid, n, crop, Path(tmp))
            rows.append(f"| {r['grid']} | {n} | {r['mb']:.1f} | {r['decode']:.1f} | "
                        f"{r['build']:.1f} | {r['cache']:.0f} | {r['gbps']:.1f} | "
                        f"**{r['cache'] / r['decode']:.0f}×** | {r['loader']:.0f} |")
            print(rows[-1], flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    text = "\n".join([
        "# Data loading: compressed NIfTI against the float16 cache", "",
        f"`python experiments/bench_data.py` on {platform.processor() or platform.machine()}, "
        f"{available_cores()} cores, {time.strftime('%Y-%m-%d')}. Single process unless said; "
        "decode = load + validate + RAS + divide by mean + centre crop from `.nii.gz`; cache "
        "build uses 2 worker processes; cache read = a float16 row copied out of the memory map "
        "(warm page cache); loader = a `DataLoader` over the cached dataset, batch 4, no "
        "workers, batches made float32 model inputs on the CPU (collation and conversion, "
        "which a GPU run does on the device, included).", "",
        "| grid | volumes | MB/volume cached | decode vol/s | cache build vol/s "
        "| cache read vol/s | cache GB/s | cache ÷ decode | loader vol/s |",
        "|---|---|---|---|---|---|---|---|---|", *rows, "",
        f"Peak resident memory of the benchmark process: {peak:.0f} MB.", ""])
    RESULT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
