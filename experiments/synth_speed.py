"""How long the synthetic cohort takes to generate here: per grid, 1 process against all cores.

    .venv/bin/python experiments/synth_speed.py   # writes experiments/results/synth_speed.md

Renders 400 subjects (HC 200; MDD, diabetes, dual 100/50/50; patients' twins included) at 2 mm
and 4 mm, once with one process and once with every core, and reports wall time, subjects per
second and the speed-up, measured side by side in one run.
"""

from __future__ import annotations

import platform
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from neurocvae.config import config_dir
from neurocvae.synthetic.recipe import Recipe
from neurocvae.synthetic.renderer import available_cores, generate_cohort

COUNTS = ["groups.HC.count=200", "groups.MDD.count=100", "groups.diabetes.count=50",
          "groups.dual.count=50"]
RESULT = Path(__file__).parent / "results" / "synth_speed.md"


def recipe(grid: str) -> Recipe:
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("synth", overrides=[f"grid={grid}", *COUNTS])
    return Recipe.from_dict(OmegaConf.to_container(cfg, resolve=True))


def main() -> None:
    cores = available_cores()
    rows = []
    for grid in ("ci", "default"):
        r = recipe(grid)
        seconds = {}
        for workers in (1, cores):
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                generate_cohort(r, Path(tmp) / "cohort", workers=workers)
                seconds[workers] = time.perf_counter() - start
        n_volumes = r.n_subjects + sum(n for g, n in r.counts.items() if g != r.controls)
        for workers, s in seconds.items():
            rows.append(f"| {grid} ({r.grid.voxel_size:g} mm, {'×'.join(map(str, r.grid.shape))})"
                        f" | {workers} | {r.n_subjects} + {n_volumes - r.n_subjects} twins "
                        f"| {s:.1f} | {r.n_subjects / s:.1f} | {seconds[1] / s:.2f}× |")
    text = "\n".join([
        "# Synthetic cohort generation speed", "",
        f"`python experiments/synth_speed.py` on {platform.processor() or platform.machine()}, "
        f"{cores} cores, {time.strftime('%Y-%m-%d')}. Wall time includes planning, rendering, "
        "writing compressed NIfTI and the ground-truth tables (no report).", "",
        "| grid | processes | volumes | seconds | subjects/s | speed-up |",
        "|---|---|---|---|---|---|", *rows, ""])
    RESULT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
