"""Every latent-space metric of a run, from its latents tables (docs/science.md §7).

A latents table has one row per scan: subject_id, group, role ("target"/"background"), the
ground-truth columns that are known (age, site, sex; for synthetic cohorts also delta, u_warp,
u_head, severity_<pattern>) and the codes `shared_0…`, `salient_0…`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.preprocessing import StandardScaler

from neurocvae.contrastive.latents import code_columns
from neurocvae.data.cohort import UNKNOWN
from neurocvae.evaluation import metrics

SPACES = ("salient", "shared")
CONTINUOUS = ("age", "delta", "u_warp", "u_head", "bag")  # ground truth, when present
CATEGORICAL = ("site", "sex", "group")
NUISANCE = ("age", "u_warp", "u_head", "delta")  # leakage R² targets
ACTIVE_VARIANCE = 0.01  # a code dimension is active when its mean varies this much over scans


def severity_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if c.startswith("severity_")]


def active_columns(table: pd.DataFrame, space: str) -> list[str]:
    """The code columns whose variance over the table's scans exceeds ACTIVE_VARIANCE (the
    "active units" of Burda et al. 2016). Collapsed dimensions carry no information, and
    standardising them would blow their noise up to unit variance."""
    return [c for c in code_columns(table, space) if table[c].var() > ACTIVE_VARIANCE]


def active_in_space(train: pd.DataFrame, space: str) -> list[str]:
    """The space's active columns over the training scans (`active_columns`); salient: over the
    targets only, as nothing constrains the backgrounds' salient codes by reconstruction."""
    return active_columns(train[train["role"] == "target"] if space == "salient" else train,
                          space)


def standardised(train: pd.DataFrame, test: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """Codes of `test` scaled with the training scans' mean and SD (both sets)."""
    return StandardScaler().fit(train[columns].to_numpy()).transform(test[columns].to_numpy())


def rsa(codes: np.ndarray, table: pd.DataFrame) -> dict[str, float]:
    """Kendall τ of the space's distances with every known ground-truth factor (categorical
    ones over the scans where they are not `unknown`); `severity` is the mean over patterns of
    τ within the patients carrying that pattern."""
    result = {c: metrics.rsa_tau(codes, table[c].to_numpy()) for c in CONTINUOUS if c in table}
    for column in CATEGORICAL:
        if column in table:
            known = (table[column] != UNKNOWN).to_numpy()
            result[column] = metrics.rsa_tau(codes[known], table[column].to_numpy()[known],
                                             categorical=True)
    within = []
    for column in severity_columns(table):
        carriers = (table[column] > 0).to_numpy()
        result[column] = metrics.rsa_tau(codes[carriers], table[column].to_numpy()[carriers])
        within.append(result[column])
    if within:
        result["severity"] = float(np.nanmean(within)) if not np.all(np.isnan(within)) else np.nan
    return result


def space_scores(codes: np.ndarray, targets: pd.DataFrame, all_codes: np.ndarray,
                 is_target: np.ndarray) -> dict[str, Any]:
    """Metrics of one space: `codes` [n_targets, d] standardised, `all_codes` of targets and
    backgrounds for the set AUROC."""
    labels = targets["group"].to_numpy()
    scores: dict[str, Any] = {
        "silhouette": metrics.silhouette(codes, labels),
        "kmeans": metrics.kmeans_agreement(codes, labels),
        "gmm": metrics.mixture_agreement(codes, labels),
        "knn_balanced_accuracy": metrics.knn_balanced_accuracy(codes, labels),
        "rsa_tau": rsa(codes, targets),
        "leakage_r2": {c: metrics.leakage_r2(codes, targets[c].to_numpy())
                       for c in NUISANCE if c in targets},
        "auroc_target_vs_background": metrics.group_auroc(all_codes, is_target)}
    if "site" in targets:
        scores["site_balanced_accuracy"] = metrics.site_leakage(codes, targets["site"].to_numpy())
    return scores


def mahalanobis(codes: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """[n] Mahalanobis distances of codes [n, d] from the mean of the reference codes [m, d],
    under their covariance (pseudo-inverse)."""
    centred = codes - reference.mean(0)
    precision = np.linalg.pinv(np.atleast_2d(np.cov(reference, rowvar=False)))
    return np.sqrt(np.einsum("ij,jk,ik->i", centred, precision, centred))


def beyond_training(test: pd.DataFrame, train: pd.DataFrame) -> list[dict[str, Any]]:
    """The held-out scans whose codes lie farther from the training scans (targets and
    backgrounds) than any of them does, per space, most extreme first: `mahalanobis` on the
    space's active dimensions (salient: active over the targets). The model extrapolates
    there; a control's salient code there is not evidence of disease. Rows: subject_id, role,
    group, space, distance and training_max (unitless)."""
    rows = []
    for space in SPACES:
        if not code_columns(test, space):
            continue
        active = active_in_space(train, space)
        if not active or len(train) <= len(active):
            continue
        codes = train[active].to_numpy(np.float64)
        limit = float(mahalanobis(codes, codes).max())
        distances = mahalanobis(test[active].to_numpy(np.float64), codes)
        for i in np.flatnonzero(distances > limit):
            row = test.iloc[i]
            rows.append({"subject_id": str(row["subject_id"]), "role": str(row["role"]),
                         "group": str(row.get("group", "")), "space": space,
                         "distance": float(distances[i]), "training_max": limit})
    return sorted(rows, key=lambda r: r["distance"] / r["training_max"], reverse=True)


def score_latents(test: pd.DataFrame, train: pd.DataFrame) -> dict[str, Any]:
    """All latent metrics of the `test` scans, on the active code dimensions standardised with
    `train` statistics (a space with no active dimension gets only its counts)."""
    is_target = (test["role"] == "target").to_numpy()
    targets = test[is_target].reset_index(drop=True)
    result: dict[str, Any] = {
        "n": {"target": int(is_target.sum()), "background": int((~is_target).sum())},
        "groups": targets["group"].value_counts().to_dict()}
    for space in SPACES:
        if not code_columns(test, space):
            continue
        active = active_in_space(train, space)
        result[space] = {"dimensions": len(code_columns(test, space)), "active": len(active)}
        if active:
            scaled = standardised(train, test, active)
            result[space] |= space_scores(scaled[is_target], targets, scaled, is_target)
    if "salient" in result:
        raw = test[code_columns(test, "salient")].to_numpy()
        result["salient"]["energy_ratio"] = metrics.energy_ratio(raw[~is_target], raw[is_target])
        if "shared" in result:
            ari = [result[s].get("kmeans", {}).get("ari", np.nan) for s in SPACES]
            result["delta_ari"] = ari[0] - ari[1]
            age = result["shared"].get("leakage_r2", {}).get("age", np.nan)
            if age and age > 0:
                salient = result["salient"].get("leakage_r2", {}).get("age", np.nan)
                result["age_leakage_index"] = salient / age
    return result


def separation(table: pd.DataFrame, *, by: str = "group") -> dict[str, Any]:
    """Silhouette and k-means ARI of the true `by` groups in each space of a latents table
    (raw codes): the quick check `neurocvae-train` writes."""
    labels = table[by].to_numpy()
    result: dict[str, Any] = {"n": len(table), "groups": table[by].value_counts().to_dict()}
    for space in SPACES:
        codes = table[code_columns(table, space)].to_numpy()
        if codes.shape[1] == 0:  # e.g. a plain VAE has no shared space
            continue
        result[space] = {"silhouette": metrics.silhouette(codes, labels),
                         "kmeans_ari": metrics.kmeans_agreement(codes, labels)["ari"]}
    return result
