"""Metrics of a latent space against known groups and ground-truth factors (docs/science.md §7).

Pure functions of arrays: codes are float [n, d], labels any hashable [n], values float [n].
Every function returns nan (not an error) when the data cannot answer (one group, too few
subjects), so a table of runs always has every column.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import pdist
from scipy.stats import kendalltau, pearsonr
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.metrics import (
    adjusted_rand_score,
    balanced_accuracy_score,
    normalized_mutual_info_score,
    r2_score,
    roc_auc_score,
    silhouette_score,
)
from sklearn.metrics.cluster import contingency_matrix
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier

NAN = float("nan")
KMEANS_SEED = 123  # contrastiveVI's evaluation seed (docs/science.md §6)


def _groups(labels: np.ndarray) -> int:
    return len(np.unique(labels))


def _folds(labels: np.ndarray, wanted: int = 5) -> int:
    """Stratified folds possible: min(wanted, smallest group); < 2 means no cross-validation."""
    return min(wanted, int(np.unique(labels, return_counts=True)[1].min()))


def silhouette(codes: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette of the true groups (Euclidean); nan with fewer than 2 groups."""
    if not 2 <= _groups(labels) < len(labels):
        return NAN
    return float(silhouette_score(codes, labels))


def cluster_accuracy(labels: np.ndarray, found: np.ndarray) -> float:
    """Fraction of subjects whose cluster maps to their group under the best one-to-one
    matching of clusters to groups (Hungarian method on the contingency matrix)."""
    table = contingency_matrix(labels, found)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / len(labels))


def agreement(labels: np.ndarray, found: np.ndarray) -> dict[str, float]:
    """ARI, NMI and matched accuracy of a clustering against the true labels."""
    return {"ari": float(adjusted_rand_score(labels, found)),
            "nmi": float(normalized_mutual_info_score(labels, found)),
            "accuracy": cluster_accuracy(labels, found)}


def kmeans_agreement(codes: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """k-means (k = number of true groups, 10 starts, seed 123) against the true groups."""
    k = _groups(labels)
    if k < 2:
        return dict.fromkeys(("ari", "nmi", "accuracy"), NAN)
    found = KMeans(n_clusters=k, n_init=10, random_state=KMEANS_SEED).fit_predict(codes)
    return agreement(labels, found)


def mixture_agreement(codes: np.ndarray, labels: np.ndarray, *, repeats: int = 10
                      ) -> dict[str, float]:
    """Gaussian mixtures (k = number of true groups, full covariance) fitted from `repeats`
    seeds; each score averaged over the fits, as the original evaluation did."""
    k = _groups(labels)
    if k < 2 or len(labels) <= k:
        return dict.fromkeys(("ari", "nmi", "accuracy"), NAN)
    fits = [agreement(labels, GaussianMixture(k, covariance_type="full", reg_covar=1e-4,
                                              random_state=seed).fit_predict(codes))
            for seed in range(repeats)]
    return {key: float(np.mean([f[key] for f in fits])) for key in fits[0]}


def knn_balanced_accuracy(codes: np.ndarray, labels: np.ndarray, *, neighbours: int = 5
                          ) -> float:
    """Out-of-fold balanced accuracy of a 5-nearest-neighbour classifier (stratified 5-fold,
    fewer folds when a group is smaller)."""
    folds = _folds(labels)
    if _groups(labels) < 2 or folds < 2:
        return NAN
    k = min(neighbours, len(labels) - len(labels) // folds - 1)
    predicted = cross_val_predict(KNeighborsClassifier(k), codes, labels,
                                  cv=StratifiedKFold(folds, shuffle=True, random_state=0))
    return float(balanced_accuracy_score(labels, predicted))


def rsa_tau(codes: np.ndarray, values: np.ndarray, *, categorical: bool = False) -> float:
    """Kendall τ-b between the latent distance matrix (Euclidean) and the ground-truth one
    (|Δvalue|, or 1[values differ] when `categorical`), over the upper triangles."""
    values = np.asarray(values)
    if len(values) < 3 or _groups(values) < 2:
        return NAN
    if categorical:
        _, codes_of = np.unique(values, return_inverse=True)
        truth = pdist(codes_of[:, None], metric="hamming")  # 1-D: exactly 1[differ]
    else:
        truth = pdist(values.astype(float)[:, None], metric="cityblock")
    return float(kendalltau(pdist(codes), truth).statistic)


def leakage_r2(codes: np.ndarray, values: np.ndarray, *, seed: int = 0) -> float:
    """Out-of-fold R² of a ridge regression (α chosen inside, 1e-3…1e3) from codes to a
    nuisance value, KFold(5, shuffled, seeded): ≈ 1 when the codes carry it, ≤ 0 when not.
    Predictions are clipped to the training fold's range, so one outlying scan cannot drive R²
    to −100 by linear extrapolation."""
    values = np.asarray(values, dtype=float)
    if len(values) < 10 or np.std(values) == 0:
        return NAN
    predicted = np.empty_like(values)
    for train, test in KFold(5, shuffle=True, random_state=seed).split(codes):
        model = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(codes[train], values[train])
        predicted[test] = np.clip(model.predict(codes[test]), values[train].min(),
                                  values[train].max())
    return float(r2_score(values, predicted))


def site_leakage(codes: np.ndarray, sites: np.ndarray) -> float:
    """Out-of-fold balanced accuracy of a multinomial logistic regression codes → site
    (stratified 5-fold); chance is 1/#sites."""
    folds = _folds(sites)
    if _groups(sites) < 2 or folds < 2:
        return NAN
    predicted = cross_val_predict(LogisticRegression(max_iter=2000), codes, sites,
                                  cv=StratifiedKFold(folds, shuffle=True, random_state=0))
    return float(balanced_accuracy_score(sites, predicted))


def group_auroc(codes: np.ndarray, is_target: np.ndarray) -> float:
    """Out-of-fold AUROC of a logistic regression telling targets from backgrounds
    (stratified 5-fold): 0.5 when the space is blind to the set."""
    is_target = np.asarray(is_target, dtype=bool)
    folds = _folds(is_target)
    if _groups(is_target) < 2 or folds < 2:
        return NAN
    probability = cross_val_predict(LogisticRegression(max_iter=2000), codes, is_target,
                                    cv=StratifiedKFold(folds, shuffle=True, random_state=0),
                                    method="predict_proba")[:, 1]
    return float(roc_auc_score(is_target, probability))


def energy_ratio(background_codes: np.ndarray, target_codes: np.ndarray) -> float:
    """mean ‖code‖² over backgrounds / mean ‖code‖² over targets (raw codes): → 0 when the
    salient space is silent on healthy scans."""
    target = float(np.mean(np.sum(target_codes**2, axis=1)))
    return float(np.mean(np.sum(background_codes**2, axis=1))) / target if target else NAN


def twin_error(counterfactual: np.ndarray, image: np.ndarray, twin: np.ndarray) -> float:
    """‖x̂_healthy − x_twin‖² / ‖x − x_twin‖² for one patient's volumes: < 1 when the
    counterfactual D([z, 0]) is closer to the planted healthy twin than the scan itself."""
    return float(np.sum((counterfactual - twin) ** 2) / np.sum((image - twin) ** 2))


def counterfactual_error(counterfactual: np.ndarray, twin: np.ndarray,
                         reconstruction: np.ndarray, image: np.ndarray) -> float:
    """‖D([z, 0]) − x_twin‖² / ‖D([z, s]) − x‖²: how far the healthy counterfactual is from the
    planted twin, in units of the model's own reconstruction error (1: as close to the twin as
    the reconstruction is to the scan; the disease is then fully removed)."""
    return float(np.sum((counterfactual - twin) ** 2) / np.sum((reconstruction - image) ** 2))


def disease_gain(reconstruction: np.ndarray, twin_reconstruction: np.ndarray,
                 image: np.ndarray, twin: np.ndarray) -> float:
    """⟨D(E(x)) − D(E(x_twin)), x − x_twin⟩ / ‖x − x_twin‖²: the share of the planted disease
    x − x_twin that the autoencoder reproduces (1: all of it; 0: patient and twin are
    reconstructed alike)."""
    difference = image - twin
    return float(np.sum((reconstruction - twin_reconstruction) * difference)
                 / np.sum(difference**2))


def map_correlation(model_map: np.ndarray, true_map: np.ndarray, mask: np.ndarray) -> float:
    """Pearson r inside `mask` between one patient's model disease map D([z, s]) − D([z, 0])
    and the planted one x − x_twin; nan when either is constant there."""
    a, b = model_map[mask], true_map[mask]
    return float(pearsonr(a, b).statistic) if np.std(a) and np.std(b) else NAN
