"""Variance explained on a run's test split by the linear start on decoder grids of several
sizes, beside PCA's at full resolution and on the baselines' pooled grid.

    .venv/bin/python experiments/linear_grid_ve.py RUN [VOXELS …]

RUN: a `neurocvae-train` run folder of the additive model (its configuration, data and splits
are used; its weights are not). For each VOXELS (`arch.linear_voxels`; default 131072 and
1048576; the run's `arch.salient_linear_voxels` is kept) the model is built untrained, set by
the linear start (`initialise_linear`) from the training split, and its test variance explained
is measured as the benchmark measures it (full resolution). PCA (10 components of every
training scan) is measured at full resolution and on the grid the baselines' codes use
(average-pooled to at most 131,072 voxels). Prints a markdown table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from neurocvae.contrastive.build import build_module
from neurocvae.contrastive.linear import initialise_linear
from neurocvae.data.scans import ROLES
from neurocvae.evaluation.baselines import pca_variance_explained, pooling, split_volumes
from neurocvae.evaluation.decoded import decode_split, mean_image
from neurocvae.evaluation.evaluate import run_config, run_datamodule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("voxels", nargs="*", type=int, default=[131_072, 1_048_576])
    args = parser.parse_args()
    config = run_config(args.run)
    datamodule = run_datamodule(config)
    shape = list(config.data.preprocessing.shape)
    print(f"{args.run} ({'×'.join(map(str, shape))} voxels), test split\n\n"
          "| model | grid of the linear images / PCA | variance explained |\n|---|---|---|")
    reference = mean_image(datamodule)
    for voxels in args.voxels:
        cfg = OmegaConf.merge(config, {"arch": {"linear_voxels": voxels}})
        module = build_module(cfg, shape)
        initialise_linear(module.nets, datamodule, projections=cfg.initialise.linear,
                          contrast=cfg.initialise.contrast,
                          outside_detail=cfg.initialise.get("outside_detail", True))
        shared, salient = module.nets.decoder.shared_linear, module.nets.decoder.salient_linear
        ve = decode_split(module, datamodule, "test", reference=reference).variance_explained
        print(f"| linear start, `arch.linear_voxels={voxels}` | stride {shared.stride} "
              f"({shared.images().shape[1]:,} voxels; salient images: stride {salient.stride}) "
              f"| {ve:.4f} |")
    for factor in sorted({1, pooling(datamodule.image_shape)}):
        train, test = (np.concatenate([split_volumes(datamodule, split, role, factor)[1]
                                       for role in ROLES]) for split in ("train", "test"))
        print(f"| PCA, 10 components | pooled by {factor} | "
              f"{pca_variance_explained(train, test, 10):.4f} |")


if __name__ == "__main__":
    main()
