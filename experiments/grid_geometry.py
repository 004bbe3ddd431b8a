"""The linear start with the coarse projection grid's cells where `coarse_pool` puts them,
against the earlier geometry that stretched one grid over the other.

    .venv/bin/python experiments/grid_geometry.py RUN [RUN …] [--out FILE_STEM]

RUN: a `neurocvae-train` run folder of the additive model (its configuration, data and splits;
nothing of the trained model). The salient projection pools the scans in cells of `stride`
input voxels from the first voxel on, the last cell cut short where the stride does not divide
the grid (4,096 voxels: 3 at 4 mm, 40 voxels in 14 cells). Where the linear start reads a
coarse image on the shared projection's grid (the salient axes the shared axes are sought
outside, the salient detail, each salient axis's pattern share K), `linear.regrid` now puts
each cell over the input voxels it pools (`current`); the earlier code stretched the 14 cells
over the 40 voxels (nearest neighbour up, adaptive average pooling down), up to a cell off
(`earlier`). Both linear starts are built from the training split, untrained; on the
validation and the test split: `auroc_z`, the out-of-fold AUROC of the shared codes telling
targets from backgrounds (`twins`: each target replaced by its planted healthy twin, where the
cohort has them); `ari_s`, k-means of the targets' salient codes against their true groups;
`ve`, the variance the start explains about the training mean on the input grid (targets from
D([z, s]), backgrounds from D([z, 0])); `share`, the norms ‖K‖ of the kept salient axes.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from neurocvae.contrastive import linear
from neurocvae.contrastive.build import build_module
from neurocvae.contrastive.module import ContrastiveModule
from neurocvae.contrastive.nets import coarse_shape
from neurocvae.data.datamodules import ContrastiveDataModule
from neurocvae.evaluation.decoded import mean_image, twin_batch
from neurocvae.evaluation.evaluate import find_cohort, run_config, run_datamodule
from neurocvae.evaluation.metrics import group_auroc
from neurocvae.evaluation.report import markdown_table

CURRENT = linear.regrid


def stretched_regrid(images: np.ndarray, input_shape: Sequence[int], stride: int,
                     new_stride: int) -> np.ndarray:
    """The earlier geometry: one grid's shape stretched over the other's (nearest neighbour to
    a finer grid, adaptive average pooling to a coarser one)."""
    shape, new_shape = (coarse_shape(input_shape, s) for s in (stride, new_stride))
    if stride == new_stride or not len(images):
        return CURRENT(images, input_shape, stride, new_stride)
    if new_stride > stride:
        return linear.block_average(images, shape, new_shape)
    volumes = torch.from_numpy(images).reshape(len(images), 1, *shape)
    resized = torch.nn.functional.interpolate(volumes, size=tuple(new_shape), mode="nearest")
    return resized.flatten(1).numpy()


def linear_start(config, datamodule: ContrastiveDataModule, regrid) -> ContrastiveModule:
    """The run's model with its linear start built with `regrid`, untrained."""
    linear.regrid = regrid
    try:
        torch.manual_seed(0)
        module = build_module(config, datamodule.image_shape)
        linear.initialise_linear(module.nets, datamodule, contrast=config.initialise.contrast,
                                 outside_detail=config.initialise.get("outside_detail", True))
    finally:
        linear.regrid = CURRENT
    return module.eval()


@torch.no_grad()
def split_rows(module: ContrastiveModule, datamodule: ContrastiveDataModule, split: str,
               reference: np.ndarray) -> dict[str, float]:
    cohort = find_cohort(datamodule.splits[split]["target"]["path"])
    truth = None if cohort is None else pd.read_csv(cohort.ground_truth).set_index("subject_id")
    has_twins = truth is not None and "twin_path" in truth.columns
    group_of = datamodule.splits[split]["target"].set_index("subject_id")["group"]
    shared, twins, salient, groups, residual, total = [], [], [], [], 0.0, 0.0
    for role in ("target", "background"):
        for batch in datamodule.input_batches(split, role):
            z, s = module.latent_representation(batch["image"], role)
            shared.append(z.numpy())
            decoded = module.nets.decode(z, s if role == "target" else None)
            residual += float((decoded - batch["image"]).square().sum())
            total += float((batch["image"] - torch.from_numpy(reference)).square().sum())
            if role == "target":
                salient.append(s.numpy())
                groups += list(group_of.loc[list(batch["subject_id"])])
            if has_twins and role == "target":
                images = twin_batch(datamodule, [str(cohort.root / truth.loc[subject, "twin_path"])
                                               for subject in batch["subject_id"]])
                twins.append(module.latent_representation(images)[0].numpy())
            elif has_twins:
                twins.append(z.numpy())
    n_target = len(groups)
    is_target = np.arange(sum(map(len, shared))) < n_target
    codes = np.concatenate(salient)
    active = codes.std(0) > 1e-3
    row = {"auroc_z": group_auroc(np.concatenate(shared), is_target),
           "twins": group_auroc(np.concatenate(twins), is_target) if has_twins else np.nan,
           "ari_s": np.nan, "ve": 1 - residual / total}
    if active.any():
        labels = KMeans(len(set(groups)), n_init=10, random_state=0).fit_predict(codes[:, active])
        row["ari_s"] = adjusted_rand_score(groups, labels)
    return row


def geometry_rows(run: Path) -> list[dict]:
    config = run_config(run)
    datamodule = run_datamodule(config)
    reference = mean_image(datamodule)[None]
    rows = []
    for name, regrid in (("earlier", stretched_regrid), ("current", CURRENT)):
        module = linear_start(config, datamodule, regrid)
        kept = int((module.nets.salient_encoder.linear.weight.abs().sum(1) > 0).sum())
        share = module.nets.pattern_share[:kept].norm(dim=1).tolist()
        for split in ("val", "test"):
            if split not in datamodule.splits or datamodule.splits[split]["target"].empty:
                continue
            rows.append({"run": str(run), "geometry": name, "split": split, "kept": kept,
                         **split_rows(module, datamodule, split, reference),
                         "share": ", ".join(f"{n:.2f}" for n in share)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, help="write FILE_STEM.csv beside the printed table")
    args = parser.parse_args()
    table = pd.DataFrame([row for run in args.runs for row in geometry_rows(run)])
    if args.out:
        table.to_csv(args.out.with_suffix(".csv"), index=False)
    print(markdown_table(table.round(3)))


if __name__ == "__main__":
    main()
