"""Brain-age prediction at UK Biobank scale: what 40,000 scans cost, measured side by side.

    .venv/bin/python experiments/bench_predict.py   # writes results/bench_predict.md

On `N` synthetic scans on UK Biobank's 1 mm grid (182×218×182, the `ukbb` grid), it measures:
1. building the cache (decoding, orienting, normalising and cropping to 160×192×160) from
   `.nii.gz` files and from the same scans inside UK Biobank-style zips, 2 worker processes;
2. `neurocvae-brainage task=predict` with the published SFCN architecture (random weights: the
   speed does not depend on them) from the warm cache, at batch 1 and 4, with 0 and 2 loader
   workers, on the CPU, and on a GPU when there is one (bf16 too);
and projects each onto 40,000 scans.
"""

from __future__ import annotations

import platform
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

import pandas as pd
import torch
from omegaconf import OmegaConf

from neurocvae.brainage import run
from neurocvae.brainage.sfcn import SFCN
from neurocvae.config import compose_config
from neurocvae.data.cache import open_or_build
from neurocvae.data.cohort import read_manifest
from neurocvae.data.volumes import Preprocessing
from neurocvae.evaluation.report import markdown_table
from neurocvae.synthetic.recipe import Recipe
from neurocvae.synthetic.renderer import generate_cohort

RESULT = Path(__file__).parent / "results" / "bench_predict.md"
N = 24
UK_BIOBANK = 40_000
PREPROCESSING = Preprocessing(shape=(160, 192, 160))


def render(folder: Path) -> Path:
    cfg = compose_config("synth", ["grid=ukbb", f"groups.HC.count={N}", "groups.MDD.count=0",
                                   "groups.diabetes.count=0", "groups.dual.count=0", "twins=false"])
    recipe = Recipe.from_dict(OmegaConf.to_container(cfg, resolve=True))
    return generate_cohort(recipe, folder / "cohort", workers=2) / "manifest.csv"


def zipped(manifest: Path, folder: Path) -> list[str]:
    """Each scan packed as UK Biobank delivers it: `<id>_20252_2_0.zip/T1/<file>`."""
    paths = []
    for path in read_manifest(manifest)["path"]:
        archive = folder / f"{Path(path).name.split('.')[0]}_20252_2_0.zip"
        with zipfile.ZipFile(archive, "w") as packed:
            packed.write(path, "T1/T1_brain_linearto_MNI.nii.gz")
        paths.append(str(archive / "T1" / "T1_brain_linearto_MNI.nii.gz"))
    return paths


def cache_rows(manifest: Path, folder: Path) -> list[dict]:
    rows = []
    sources = {"`.nii.gz` files": read_manifest(manifest)["path"].tolist(),
               "UK Biobank zips": zipped(manifest, folder)}
    for name, paths in sources.items():
        start = time.perf_counter()
        open_or_build(paths, PREPROCESSING, folder / f"cache_{len(rows)}", workers=2)
        seconds = time.perf_counter() - start
        rows.append({"source": name, "scans": len(paths), "seconds": seconds,
                     "scans/s": len(paths) / seconds,
                     "40,000 scans (h)": UK_BIOBANK * seconds / len(paths) / 3600})
    return rows


def predict_rows(manifest: Path, folder: Path) -> list[dict]:
    weights = folder / "sfcn_random.p"
    torch.save(SFCN().state_dict(), weights)
    settings = [("cpu", "32-true", 1, 0), ("cpu", "32-true", 4, 0), ("cpu", "32-true", 4, 2)]
    if torch.cuda.is_available():
        settings += [("gpu", "32-true", 8, 4), ("gpu", "bf16-mixed", 8, 4)]
    rows = []
    for accelerator, precision, batch, workers in settings:
        out = folder / f"predict_{len(rows)}"
        metrics = run(compose_config("brainage", [
            "task=predict", "train=false", f"weights={weights}", f"data.manifest={manifest}",
            f"data.cache_dir={folder / 'cache_0'}", f"out_dir={out}",
            f"data.batch_size={batch}", f"data.num_workers={workers}",
            f"trainer.accelerator={accelerator}", f"trainer.precision={precision}",
            "trainer.enable_progress_bar=false"]))
        speed = metrics["throughput"]["scans_per_second"]
        device = (torch.cuda.get_device_name() if accelerator == "gpu"
                  else f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)")
        rows.append({"device": device, "precision": precision, "batch": batch,
                     "loader workers": workers, "scans/s": speed,
                     "40,000 scans (h)": UK_BIOBANK / speed / 3600})
        shutil.rmtree(out)
    return rows


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        manifest = render(folder)
        cache = cache_rows(manifest, folder)
        predict = predict_rows(manifest, folder)
    RESULT.write_text("\n".join([
        "# Brain-age prediction at UK Biobank scale", "",
        f"`.venv/bin/python experiments/bench_predict.py`, torch {torch.__version__}, "
        f"{time.strftime('%Y-%m-%d')}: {N} synthetic scans on UK Biobank's 1 mm grid "
        "(182×218×182 `.nii.gz`), cropped to SFCN's 160×192×160; the projections scale the "
        "measured rate linearly to 40,000 scans.", "",
        "## Building the cache (once per scan; 2 worker processes)", "",
        markdown_table(pd.DataFrame(cache)), "",
        "## Prediction from the cache (`task=predict`, published SFCN architecture)", "",
        markdown_table(pd.DataFrame(predict)), ""]))


if __name__ == "__main__":
    main()
