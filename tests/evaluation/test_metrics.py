"""Evaluation metrics against sklearn/scipy and hand-made cases (docs/science.md §7)."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau
from sklearn.linear_model import RidgeCV
from sklearn.metrics import adjusted_rand_score, r2_score
from sklearn.model_selection import KFold, cross_val_predict

from neurocvae.contrastive.linear import contrastive_pca
from neurocvae.evaluation import metrics
from neurocvae.evaluation.baselines import pca_variance_explained
from neurocvae.evaluation.scores import beyond_training, mahalanobis, score_latents, separation
from neurocvae.evaluation.summary import cross_seed_stability

rng = np.random.default_rng(0)


def separated(n: int = 60, gap: float = 20.0) -> tuple[np.ndarray, np.ndarray]:
    """Two tight, far-apart groups in 4-D."""
    labels = np.repeat(["A", "B"], n // 2)
    codes = rng.normal(size=(n, 4))
    codes[labels == "B"] += gap
    return codes, labels


def test_perfectly_separated_groups_score_one():
    codes, labels = separated()
    for scores in (metrics.kmeans_agreement(codes, labels),
                   metrics.mixture_agreement(codes, labels, repeats=3)):
        assert scores == pytest.approx({"ari": 1.0, "nmi": 1.0, "accuracy": 1.0})
    assert metrics.knn_balanced_accuracy(codes, labels) == 1.0
    assert metrics.silhouette(codes, labels) > 0.8


def test_shuffled_labels_score_near_zero():
    codes, labels = separated(400)
    shuffled = rng.permutation(labels)
    assert abs(metrics.kmeans_agreement(codes, shuffled)["ari"]) < 0.02
    assert abs(metrics.kmeans_agreement(codes, shuffled)["nmi"]) < 0.02
    assert abs(metrics.knn_balanced_accuracy(codes, shuffled) - 0.5) < 0.1
    assert abs(metrics.silhouette(codes, shuffled)) < 0.05


def test_cluster_accuracy_matches_clusters_to_groups():
    labels = np.array([0, 0, 0, 1, 1, 1])
    assert metrics.cluster_accuracy(labels, np.array([5, 5, 5, 7, 7, 7])) == 1.0  # renamed
    assert metrics.cluster_accuracy(labels, np.array([1, 1, 0, 0, 0, 0])) == pytest.approx(5 / 6)
    found = rng.integers(0, 3, 50)
    truth = rng.integers(0, 3, 50)
    assert metrics.agreement(truth, found)["ari"] == adjusted_rand_score(truth, found)


def test_rsa_tau_is_kendall_tau_of_the_distance_matrices():
    codes = rng.normal(size=(30, 3))
    values = rng.normal(size=30)
    i, j = np.triu_indices(30, 1)
    expected = kendalltau(np.linalg.norm(codes[i] - codes[j], axis=1),
                          np.abs(values[i] - values[j])).statistic
    assert metrics.rsa_tau(codes, values) == pytest.approx(expected)
    assert metrics.rsa_tau(values[:, None], values) == pytest.approx(1.0)  # a copy of it
    sites = np.array(["S1", "S2"] * 15)
    assert metrics.rsa_tau(np.where(sites == "S1", 0.0, 9.0)[:, None], sites,
                           categorical=True) == pytest.approx(1.0)


def test_a_copy_of_age_leaks_with_r2_one_and_noise_does_not():
    age = rng.uniform(45, 80, 200)
    assert metrics.leakage_r2(np.c_[age, rng.normal(size=200)], age) > 0.99
    assert metrics.leakage_r2(rng.normal(size=(200, 4)), age) < 0.05


def test_site_leakage_and_group_auroc():
    sites = np.repeat(["S1", "S2", "S3", "S4"], 25)
    onehot = (sites[:, None] == np.unique(sites)).astype(float)
    assert metrics.site_leakage(onehot + 0.01 * rng.normal(size=onehot.shape), sites) == 1.0
    assert abs(metrics.site_leakage(rng.normal(size=(100, 3)), sites) - 0.25) < 0.15
    is_target = np.repeat([True, False], 100)
    assert metrics.group_auroc(is_target[:, None] + 0.1 * rng.normal(size=(200, 1)),
                               is_target) == pytest.approx(1.0)
    assert abs(metrics.group_auroc(rng.normal(size=(200, 2)), is_target) - 0.5) < 0.12


def test_energy_twin_error_and_map_correlation_by_hand():
    assert metrics.energy_ratio(np.zeros((5, 3)), np.ones((5, 3))) == 0.0
    assert metrics.energy_ratio(np.ones((5, 3)), np.ones((5, 3))) == 1.0
    twin = np.zeros((4, 4))
    image = twin.copy()
    image[1, 1] = 1.0  # the disease: one voxel
    assert metrics.twin_error(twin, image, twin) == 0.0  # the counterfactual is the twin
    assert metrics.twin_error(image, image, twin) == 1.0  # ... or the scan itself
    mask = np.ones_like(twin, dtype=bool)
    assert metrics.map_correlation(2 * (image - twin), image - twin, mask) == pytest.approx(1.0)
    assert np.isnan(metrics.map_correlation(np.zeros_like(twin), image - twin, mask))


def test_disease_gain_and_counterfactual_error_by_hand():
    draw = np.random.default_rng(1)
    twin = draw.uniform(size=(6, 6))
    disease = np.zeros_like(twin)
    disease[2:4, 2:4] = 0.1
    image = twin + disease
    blur = 0.01 * draw.normal(size=twin.shape)  # the same reconstruction error for both
    assert metrics.disease_gain(image + blur, twin + blur, image, twin) == pytest.approx(1.0)
    assert metrics.disease_gain(twin + blur, twin + blur, image, twin) == 0.0  # disease ignored
    half = metrics.disease_gain(twin + disease / 2 + blur, twin + blur, image, twin)
    assert half == pytest.approx(0.5)
    # the counterfactual removes the disease down to the reconstruction error: ratio 1
    assert metrics.counterfactual_error(twin + blur, twin, image + blur,
                                        image) == pytest.approx(1.0)
    assert metrics.counterfactual_error(image + blur, twin, image + blur, image) > 10


def test_pca_variance_explained_is_one_for_data_in_its_span():
    draw = np.random.default_rng(2)
    basis = draw.normal(size=(3, 40))
    train, test = draw.normal(size=(50, 3)) @ basis, draw.normal(size=(20, 3)) @ basis
    assert pca_variance_explained(train, test, 3) == pytest.approx(1.0)
    assert pca_variance_explained(train, test, 1) < 0.9


def test_undefined_cases_give_nan_not_errors():
    one_group = np.array(["A"] * 10)
    codes = rng.normal(size=(10, 2))
    assert np.isnan(metrics.silhouette(codes, one_group))
    assert np.isnan(metrics.kmeans_agreement(codes, one_group)["ari"])
    assert np.isnan(metrics.knn_balanced_accuracy(codes, np.array(["A"] * 9 + ["B"])))
    assert np.isnan(metrics.leakage_r2(codes, np.ones(10)))


def test_contrastive_pca_finds_the_target_only_direction_pca_misses():
    """Backgrounds and targets share a large-variance direction; only targets vary along a
    second, smaller one: PCA's first axis is the shared one, cPCA's the target one."""
    n, v = 200, 50
    shared, special = np.eye(v)[0], np.eye(v)[1]
    background = np.outer(rng.normal(size=n) * 10, shared) + 0.1 * rng.normal(size=(n, v))
    target = (np.outer(rng.normal(size=n) * 10, shared) + np.outer(rng.normal(size=n) * 3,
                                                                   special)
              + 0.1 * rng.normal(size=(n, v)))
    axis = contrastive_pca(target, background, components=1, alpha=10.0)[:, 0]
    assert abs(axis @ special) > 0.99
    assert abs(np.linalg.svd(target - target.mean(0))[2][0] @ shared) > 0.99


def latents_table(n: int = 80) -> pd.DataFrame:
    """Targets whose salient code is their group (one axis each) and whose shared code is age;
    backgrounds with silent salient codes."""
    groups = np.repeat(["MDD", "diabetes"], n // 2)
    age = rng.uniform(45, 80, n)
    targets = pd.DataFrame({
        "subject_id": [f"t{i}" for i in range(n)], "group": groups, "age": age,
        "site": np.tile(["S1", "S2"], n // 2), "role": "target",
        "severity_A": np.where(groups == "MDD", rng.uniform(0.5, 1.5, n), 0.0),
        "salient_0": (groups == "MDD") * 5.0 + 0.1 * rng.normal(size=n),
        "salient_1": (groups == "diabetes") * 5.0 + 0.1 * rng.normal(size=n),
        "shared_0": (age - 62) / 10, "shared_1": rng.normal(size=n)})
    background = targets.assign(subject_id=[f"b{i}" for i in range(n)], group="HC",
                                role="background", severity_A=0.0,
                                salient_0=0.01 * rng.normal(size=n),
                                salient_1=0.01 * rng.normal(size=n))
    return pd.concat([targets, background], ignore_index=True)


def test_score_latents_reads_a_good_salient_space_as_good():
    train, test = latents_table(), latents_table()
    scores = score_latents(test, train)
    assert scores["n"] == {"target": 80, "background": 80}
    assert scores["salient"]["kmeans"]["ari"] == pytest.approx(1.0)
    assert scores["shared"]["kmeans"]["ari"] < 0.2
    assert scores["delta_ari"] > 0.8
    assert scores["salient"]["leakage_r2"]["age"] < 0.1 < 0.9 < scores["shared"]["leakage_r2"][
        "age"]
    assert scores["salient"]["energy_ratio"] < 0.01
    assert scores["salient"]["auroc_target_vs_background"] > 0.9
    assert abs(scores["shared"]["auroc_target_vs_background"] - 0.5) < 0.15
    assert set(scores["salient"]["rsa_tau"]) >= {"age", "site", "group", "severity_A",
                                                 "severity"}
    quick = separation(test[test.role == "target"])
    assert quick["salient"]["kmeans_ari"] == pytest.approx(1.0)


def test_one_outlying_scan_cannot_sink_the_leakage_r2():
    """A linear probe extrapolated to one far outlier predicts absurd ages (unclipped R² far
    below −1); clipped to the training fold's range, R² stays that of a weak probe."""
    age = rng.uniform(45, 80, 60)
    codes = np.c_[age + rng.normal(0, 3, 60), rng.normal(size=60)]
    codes[0] = [1000.0, 0.0]
    unclipped = cross_val_predict(RidgeCV(alphas=np.logspace(-3, 3, 13)), codes, age,
                                  cv=KFold(5, shuffle=True, random_state=0))
    assert r2_score(age, unclipped) < -10
    assert -1 < metrics.leakage_r2(codes, age) < 1


def test_cross_seed_stability_is_one_for_the_same_arrangement_and_near_zero_for_noise():
    table = latents_table(40)
    rotated = table.copy()  # another seed: the same geometry, rotated and rescaled
    rotated[["salient_0", "salient_1"]] = 3 * table[["salient_1", "salient_0"]].to_numpy()
    noise = table.assign(salient_0=rng.normal(size=len(table)),
                         salient_1=rng.normal(size=len(table)))
    assert cross_seed_stability([table, rotated], "salient") == pytest.approx(1.0)
    assert abs(cross_seed_stability([table, noise], "salient")) < 0.1
    assert np.isnan(cross_seed_stability([table], "salient"))


def test_active_salient_dimensions_are_counted_over_targets_only():
    """Backgrounds' salient codes are not constrained by any reconstruction: a dimension that
    varies over backgrounds only is not an active salient dimension."""
    train = latents_table()
    noise = np.random.default_rng(3).normal(size=len(train))
    train["salient_2"] = np.where(train["role"] == "background", noise, 0.0)
    assert score_latents(train, train)["salient"]["active"] == 2


def test_mahalanobis_distance_by_hand():
    reference = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [2.0, 4.0]])  # SDs 1.15, 2.31
    distances = mahalanobis(np.array([[1.0, 2.0], [1.0 + np.sqrt(4 / 3), 2.0]]), reference)
    assert distances == pytest.approx([0.0, 1.0])


def test_scans_beyond_the_training_range_are_named_per_space():
    """A held-out control with a salient code far beyond every training scan's is named for
    the salient space alone; the training scans themselves, a collapsed dimension and the
    controls at the healthy point s = 0 are not."""
    train = latents_table()
    train["salient_2"] = 0.0  # collapsed: not active, not measured
    test = train.copy()
    assert beyond_training(test, train) == []
    control = test.index[test["role"] == "background"][0]
    test.loc[control, "salient_2"] = 50.0
    assert beyond_training(test, train) == []
    test.loc[control, ["salient_0", "salient_1"]] = [30.0, -30.0]
    rows = beyond_training(test, train)
    assert [(r["subject_id"], r["role"], r["space"]) for r in rows] == [
        (test.loc[control, "subject_id"], "background", "salient")]
    assert rows[0]["distance"] > 5 * rows[0]["training_max"] > 0


def test_the_embedding_is_chosen_explicitly_and_umap_without_its_package_is_refused(
        monkeypatch):
    import sys

    from neurocvae.errors import InputError
    from neurocvae.evaluation.plots import projection

    codes = np.random.default_rng(0).normal(size=(30, 5))
    xy, name = projection(codes, "pca")
    assert xy.shape == (30, 2) and name == "PCA"
    with pytest.raises(InputError, match="embedding='tsne'"):
        projection(codes, "tsne")
    monkeypatch.setitem(sys.modules, "umap", None)  # as if umap-learn were not installed
    with pytest.raises(InputError, match=r"neurocvae\[umap\]"):
        projection(codes, "umap")
