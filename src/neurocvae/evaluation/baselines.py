"""Linear baselines on the same volumes: PCA of the targets and contrastive PCA (Abid et al.
2018), whose codes fill the `salient_*` columns of a latents table (they have no shared space).

Volumes are average-pooled to at most `MAX_VOXELS` features, so the baselines stay cheap at
1 mm (the codes depend little on fine detail).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from sklearn.decomposition import PCA

from neurocvae.data.datamodules import ContrastiveDataModule
from neurocvae.errors import InputError
from neurocvae.evaluation.latents import known_columns

MAX_VOXELS = 2**17
BASELINES = ("pca", "cpca")


def pooling(shape: tuple[int, ...]) -> int:
    """The average-pooling factor that brings a volume under MAX_VOXELS voxels."""
    return max(1, math.ceil((math.prod(shape) / MAX_VOXELS) ** (1 / 3)))


@torch.no_grad()
def split_volumes(datamodule: ContrastiveDataModule, split: str, role: str
                  ) -> tuple[pd.DataFrame, np.ndarray]:
    """The `role` rows of `split` and their model inputs, pooled and flattened: [n, V]."""
    factor = pooling(datamodule.image_shape)
    rows, arrays = [], []
    for batch in datamodule.role_loader(split, role):
        images = datamodule.on_after_batch_transfer(batch, 0)["image"]
        if factor > 1:
            images = torch.nn.functional.avg_pool3d(images, factor, ceil_mode=True)
        arrays.append(images.flatten(1).numpy())
        rows += list(batch["subject_id"])
    table = datamodule.splits[split][role].set_index("subject_id").loc[rows].reset_index()
    return table, np.concatenate(arrays)


def contrastive_pca(target: np.ndarray, background: np.ndarray, components: int,
                    alpha: float) -> np.ndarray:
    """The top `components` eigenvectors [V, k] of C_target − α·C_background (covariances of
    the rows [n, V]). Every eigenvector with a non-zero eigenvalue lies in the span of the
    centred rows, so the problem is solved exactly in that (n_t + n_b)-dimensional basis."""
    t = target - target.mean(0)
    b = background - background.mean(0)
    basis, _ = np.linalg.qr(np.concatenate([t, b]).T)  # [V, r], orthonormal columns
    tq, bq = t @ basis, b @ basis
    contrast = tq.T @ tq / len(t) - alpha * (bq.T @ bq / len(b))
    values, vectors = np.linalg.eigh(contrast)
    return basis @ vectors[:, np.argsort(values)[::-1][:components]]


def check_baselines(names: tuple[str, ...]) -> None:
    unknown = set(names) - set(BASELINES)
    if unknown:
        raise InputError(f"baselines={list(names)}: unknown {sorted(unknown)}; expected some of "
                         f"{list(BASELINES)}")


def baseline_latents(datamodule: ContrastiveDataModule, names: tuple[str, ...], split: str, *,
                     components: int = 10, alpha: float = 10.0
                     ) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """Latents tables (train, `split`) of each baseline in `names`: pca (fitted on the training
    targets) or cpca (training targets against training backgrounds, contrast `alpha`). The
    volumes are read once for all of them."""
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
        if name == "pca":
            project = PCA(components, random_state=0).fit(train_target).transform
        else:
            axes = contrastive_pca(train_target.astype(np.float64),
                                   train_background.astype(np.float64), components, alpha)
            centre = train_target.mean(0)
            project = lambda x, axes=axes, centre=centre: (x - centre) @ axes  # noqa: E731
        tables[name] = (table("train", project), table(split, project))
    return tables
