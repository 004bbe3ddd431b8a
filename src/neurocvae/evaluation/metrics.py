"""How well a latent space separates the true groups (SCIENCE.md §7)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, silhouette_score

from neurocvae.evaluation.latents import code_columns


def silhouette(codes: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette of the true groups (Euclidean); nan with fewer than 2 groups."""
    if len(set(labels)) < 2 or len(set(labels)) >= len(labels):
        return float("nan")
    return float(silhouette_score(codes, labels))


def kmeans_ari(codes: np.ndarray, labels: np.ndarray, *, seed: int = 0) -> float:
    """Adjusted Rand index of k-means (k = number of true groups, 10 starts) against them."""
    k = len(set(labels))
    if k < 2:
        return float("nan")
    found = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(codes)
    return float(adjusted_rand_score(labels, found))


def separation(table: pd.DataFrame, *, by: str = "group", seed: int = 0) -> dict[str, Any]:
    """Silhouette and k-means ARI of the true `by` groups, in the salient and the shared
    space of a latents table."""
    labels = table[by].to_numpy()
    result: dict[str, Any] = {"n": len(table), "groups": table[by].value_counts().to_dict()}
    for space in ("salient", "shared"):
        codes = table[code_columns(table, space)].to_numpy()
        result[space] = {"silhouette": silhouette(codes, labels),
                         "kmeans_ari": kmeans_ari(codes, labels, seed=seed)}
    return result
