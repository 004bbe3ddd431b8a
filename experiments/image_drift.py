"""How far training moved the decoder's linear images from the linear start.

    .venv/bin/python experiments/image_drift.py RUN [RUN …]

RUN: a `neurocvae-train` run folder of the additive model trained from the linear start (e.g. a
benchmark's `runs/cvae/seed0`). The linear start is computed again from the run's training
split (it is deterministic) and compared with the best checkpoint's images: for each shared
and each salient dimension, the voxel RMS of the start's and the trained image and
‖L_trained − L_start‖ / ‖L_start‖ (none for a dimension that starts silent). Prints one
markdown table per run.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch

from neurocvae.contrastive.build import load_module
from neurocvae.contrastive.linear import initialise_linear
from neurocvae.evaluation.evaluate import run_config, run_datamodule


@torch.no_grad()
def drift(run: Path) -> list[tuple[str, int, float, float, float]]:
    """(space, dimension, start's and trained voxel RMS, relative change) for every linear
    image."""
    config = run_config(run)
    trained = load_module(run / "checkpoints" / "best.ckpt").nets
    start = copy.deepcopy(trained)
    initialise_linear(start, run_datamodule(config), projections=config.initialise.linear,
                      contrast=config.initialise.contrast,
                      outside_detail=config.initialise.get("outside_detail", True))
    rows = []
    for space in ("shared", "salient"):
        before = getattr(start.decoder, f"{space}_linear").images().double()
        after = getattr(trained.decoder, f"{space}_linear").images().double()
        for j, (a, b) in enumerate(zip(before, after, strict=True)):
            size = a.norm().item()
            rows.append((space, j, a.square().mean().sqrt().item(),
                         b.square().mean().sqrt().item(),
                         (b - a).norm().item() / size if size else float("nan")))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    for run in parser.parse_args().runs:
        print(f"\n{run}\n\n| space | dimension | voxel RMS: start | trained | relative change |"
              "\n|---|---|---|---|---|")
        for space, j, start, trained, change in drift(run):
            print(f"| {space} | {j} | {start:.2e} | {trained:.2e} | {change:.3f} |")


if __name__ == "__main__":
    main()
