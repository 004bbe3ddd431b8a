"""Linear baselines on the same volumes: PCA of the targets and contrastive PCA (Abid et al.
2018), whose codes fill the `salient_*` columns of a latents table (they have no shared space).

Volumes are average-pooled to at most `MAX_VOXELS` features for the codes, so the baselines
stay cheap at 1 mm (the codes depend little on fine detail). PCA's variance explained is measured
on the grid the model's is (`ve_pooling`): the full resolution unless the training split would
not fit `VE_BYTES`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from sklearn.decomposition import PCA

from neurocvae.contrastive.latents import known_columns
from neurocvae.contrastive.linear import contrastive_pca
from neurocvae.contrastive.nets import linear_stride
from neurocvae.data.datamodules import ContrastiveDataModule
from neurocvae.errors import InputError

MAX_VOXELS = 2**17
VE_BYTES = 2**32  # the training split in float32 on the variance-explained grid, at most
BASELINES = ("pca", "cpca")


def pooling(shape: tuple[int, ...]) -> int:
    """The average-pooling factor that brings a volume under MAX_VOXELS voxels."""
    return max(1, math.ceil((math.prod(shape) / MAX_VOXELS) ** (1 / 3)))


def ve_pooling(datamodule: ContrastiveDataModule) -> int:
    """The average-pooling factor of the grid on which the model's and PCA's variance explained
    are measured: the smallest whose training split fits `VE_BYTES` in float32 (1 up to about
    1,700 training scans at 2 mm)."""
    scans = sum(len(datamodule.splits["train"][role]) for role in ("target", "background"))
    return linear_stride(datamodule.image_shape, VE_BYTES // (4 * scans))


def pooled(images: torch.Tensor, factor: int) -> torch.Tensor:
    """Volumes [B, 1, X, Y, Z] average-pooled by `factor` (partial blocks at the far edges)."""
    if factor == 1:
        return images
    return torch.nn.functional.avg_pool3d(images, factor, ceil_mode=True)


@torch.no_grad()
def split_volumes(datamodule: ContrastiveDataModule, split: str, role: str,
                  factor: int | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """The `role` rows of `split` and their model inputs, pooled by `factor` (None: to at most
    `MAX_VOXELS`) and flattened: [n, V]."""
    factor = factor or pooling(datamodule.image_shape)
    rows, arrays = [], []
    for batch in datamodule.input_batches(split, role):
        arrays.append(pooled(batch["image"], factor).flatten(1).numpy())
        rows += list(batch["subject_id"])
    table = datamodule.splits[split][role].set_index("subject_id").loc[rows].reset_index()
    return table, np.concatenate(arrays)


def pca_variance_explained(train: np.ndarray, test: np.ndarray, components: int) -> float:
    """Variance explained on `test` [n, V] by a PCA of `train` [m, V] with `components` axes:
    1 − Σ‖x − x̂‖² / Σ‖x − x̄_train‖², the models' `variance_explained`."""
    pca = PCA(components, random_state=0).fit(train)
    residual = test - pca.inverse_transform(pca.transform(test))
    return float(1 - np.sum(residual**2) / np.sum((test - pca.mean_) ** 2))


def check_baselines(names: tuple[str, ...]) -> None:
    unknown = set(names) - set(BASELINES)
    if unknown:
        raise InputError(f"baselines={list(names)}: unknown {sorted(unknown)}; expected some of "
                         f"{list(BASELINES)}")


def baseline_latents(datamodule: ContrastiveDataModule, names: tuple[str, ...], split: str, *,
                     components: int = 10, alpha: float = 10.0
                     ) -> dict[str, tuple[pd.DataFrame, pd.DataFrame, dict[str, float]]]:
    """Latents tables (train, `split`) of each baseline in `names`, with its decoder scores:
    pca (codes fitted on the training targets; variance explained on every `split` scan by a
    PCA of every training scan, on the `ve_pooling` grid) or cpca (training targets against
    training backgrounds, contrast `alpha`; no decoder). The volumes are read once for the
    codes, and once more for PCA's variance explained where its grid is finer."""
    check_baselines(names)
    parts = {(s, role): split_volumes(datamodule, s, role)
             for s in ("train", split) for role in ("target", "background")}
    train_target, train_background = parts["train", "target"][1], parts["train", "background"][1]

    def table(s: str, project) -> pd.DataFrame:
        blocks = []
        for role in ("target", "background"):
            rows, volumes = parts[s, role]
            codes = pd.DataFrame(project(volumes),
                                 columns=[f"salient_{j}" for j in range(components)])
            blocks.append(pd.concat([rows[known_columns(rows)].assign(role=role), codes], axis=1))
        return pd.concat(blocks, ignore_index=True)

    tables = {}
    for name in names:
        decoded = {}
        if name == "pca":
            project = PCA(components, random_state=0).fit(train_target).transform
            factor = ve_pooling(datamodule)
            grid = parts if factor == pooling(datamodule.image_shape) else {
                key: split_volumes(datamodule, *key, factor) for key in parts}
            decoded["variance_explained"] = pca_variance_explained(
                *(np.concatenate([grid[s, "target"][1], grid[s, "background"][1]])
                  for s in ("train", split)), components)
        else:
            axes = contrastive_pca(train_target.astype(np.float64),
                                   train_background.astype(np.float64), components, alpha)
            centre = train_target.mean(0)
            project = lambda x, axes=axes, centre=centre: (x - centre) @ axes  # noqa: E731
        tables[name] = (table("train", project), table(split, project), decoded)
    return tables
