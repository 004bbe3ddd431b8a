"""The linear start's salient axes on salient-projection grids of several sizes
(`arch.projection_voxels`): how many axes pass the replication test, and how well they
separate the planted groups on the validation and the test split.

    .venv/bin/python experiments/projection_grid.py RUN [RUN …] [--voxels N …] [--out FILE_STEM]

RUN: a `neurocvae-train` run folder of the additive model (its configuration, data and splits;
nothing of the trained model). For each voxel budget the training scans are average-pooled to
that grid and the salient axes are found as the linear start finds them
(`replicated_salient_axes`). Columns: `kept`, the axes that recur in held-out halves (the
salient dimensions the model starts with; the others start silent); `ari_kept_*`, k-means (2
clusters) of the held-out targets' codes on the kept axes against their true groups (– when
none is kept: the salient space starts silent); `ari_top2_*`, the same on the two leading
contrastive axes whether kept or not (what there is to find on that grid).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from neurocvae.contrastive.linear import (
    contrastive_components,
    outside,
    replicated_salient_axes,
)
from neurocvae.contrastive.nets import coarse_pool, coarse_shape, linear_stride
from neurocvae.evaluation.baselines import split_volumes
from neurocvae.evaluation.evaluate import run_config, run_datamodule
from neurocvae.evaluation.report import markdown_table


def groups_ari(codes: np.ndarray, groups: pd.Series) -> float:
    """ARI of k-means (2 clusters) of the codes [n, k] against the true groups."""
    labels = KMeans(2, n_init=10, random_state=0).fit_predict(codes)
    return float(adjusted_rand_score(groups, labels))


@torch.no_grad()
def grid_rows(run: Path, budgets: list[int]) -> pd.DataFrame:
    config = run_config(run)
    datamodule = run_datamodule(config)
    shape = tuple(config.data.preprocessing.shape)
    scans = {}  # (split, role) → (groups of the scans, volumes [n, 1, X, Y, Z])
    for split, role in [("train", "target"), ("train", "background"), ("val", "target"),
                        ("test", "target")]:
        table, volumes = split_volumes(datamodule, split, role, factor=1)
        scans[split, role] = table["group"], torch.from_numpy(volumes).view(-1, 1, *shape)
    contrast = float(config.initialise.contrast)
    rows = []
    for budget in budgets:
        stride = linear_stride(shape, budget)
        pooled = {key: coarse_pool(images, stride).flatten(1).double().numpy()
                  for key, (_, images) in scans.items()}
        target, background = pooled["train", "target"], pooled["train", "background"]
        centre = background.mean(0)
        kept, background_axes = replicated_salient_axes(target, background, config.shared_dim,
                                                        config.salient_dim, contrast)
        _, leading = contrastive_components(outside(target, background_axes, centre),
                                            outside(background, background_axes, centre),
                                            2, contrast, about=centre)
        row = {"run": str(run), "budget": budget,
               "grid": "×".join(map(str, coarse_shape(shape, stride))),
               "voxels": pooled["train", "target"].shape[1], "kept": kept.shape[1]}
        for split in ("val", "test"):
            groups = scans[split, "target"][0]
            codes = outside(pooled[split, "target"], background_axes, centre) - centre
            row[f"ari_kept_{split}"] = (groups_ari(codes @ kept, groups) if kept.shape[1]
                                        else np.nan)
            row[f"ari_top2_{split}"] = groups_ari(codes @ leading, groups)
        rows.append(row)
        print(row, flush=True)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--voxels", type=int, nargs="+", default=[16_384, 8_192, 4_096, 1_024])
    parser.add_argument("--out", type=Path, default=Path("experiments/results/projection_grid"))
    args = parser.parse_args()
    table = pd.concat([grid_rows(run, args.voxels) for run in args.runs], ignore_index=True)
    text = ["# The salient projection's grid: the linear start's axes", "",
            "Command: `" + " ".join(["python experiments/projection_grid.py",
                                     *map(str, args.runs), "--voxels",
                                     *map(str, args.voxels), "--out", str(args.out)]) + "`",
            "", __doc__.split("\n\n")[2].replace("\n", " "), "",
            markdown_table(table.round(3))]
    args.out.with_suffix(".md").write_text("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
