"""The linear start's replication rule, earlier and current, on the salient axes it keeps.

    .venv/bin/python experiments/replication_rule.py RUN [RUN …] [--voxels N] [--out FILE_STEM]

RUN: a `neurocvae-train` run folder of the additive model (its configuration, data and splits;
nothing of the trained model). The training scans are pooled to the salient projection's grid
(`--voxels`, 4,096 by default as `arch.projection_voxels`) and the contrastive axes sought
outside the backgrounds' top principal axes, as the linear start does. Over the same 5 × 2
split-halves, two rules decide how many leading axes to keep: `earlier`, the held-out contrast
about the fitting half's background mean at least 0.25 × the fitted eigenvalue; `current`
(`replicated_components`), the held-out contrast about the held-out backgrounds' own mean
positive and at least `REPLICATION` × the leading axis's. For each rule: `kept`, then on the
validation and the test split k-means of the targets' codes on the kept axes (as many clusters
as groups) against their true groups (`ari_*`) and the cross-validated R² of the planted head
size from those codes (`r2_head_*`; linear, 5 folds). `held_out`: the current rule's median
held-out contrast of the leading ranks.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.cluster import KMeans
from sklearn.linear_model import LinearRegression
from sklearn.metrics import adjusted_rand_score, r2_score
from sklearn.model_selection import KFold, cross_val_predict

from neurocvae.contrastive.linear import (
    contrast_along,
    contrastive_components,
    outside,
    principal_axes,
    replicated_components,
    split_half_contrasts,
    split_halves,
)
from neurocvae.contrastive.nets import coarse_pool, linear_stride
from neurocvae.evaluation.baselines import split_volumes
from neurocvae.evaluation.evaluate import find_cohort, run_config, run_datamodule
from neurocvae.evaluation.report import markdown_table

EARLIER = 0.25  # the earlier rule's share of the fitted eigenvalue


def earlier_rule(target: np.ndarray, background: np.ndarray, components: int, alpha: float,
                 splits: int = 5) -> int:
    """How many leading axes the earlier rule kept: held-out contrast about the fitting half's
    background mean ≥ EARLIER × the fitted eigenvalue, in the median over the split-halves."""
    fitted, held_out = [], []
    for (fit_target, fit_background), (test_target, test_background) in split_halves(
            target, background, splits, seed=0):
        centre = fit_background.mean(0)
        values, axes = contrastive_components(fit_target, fit_background, components, alpha,
                                              about=centre)
        fitted.append(values)
        held_out.append(contrast_along(axes, test_target, test_background, alpha, about=centre))
    fitted_median, held_out_median = np.median(fitted, 0), np.median(held_out, 0)
    replicates = (fitted_median > 0) & (held_out_median >= EARLIER * fitted_median)
    return len(replicates) if replicates.all() else int(np.argmin(replicates))


def scores(codes: np.ndarray, groups: pd.Series, head: np.ndarray | None) -> dict[str, float]:
    """ARI of k-means of the codes [n, k] against the groups; R² of head size from them."""
    labels = KMeans(groups.nunique(), n_init=10, random_state=0).fit_predict(codes)
    result = {"ari": adjusted_rand_score(groups, labels)}
    if head is not None:
        folds = KFold(5, shuffle=True, random_state=0)
        result["r2_head"] = r2_score(head, cross_val_predict(LinearRegression(), codes, head,
                                                             cv=folds))
    return result


@torch.no_grad()
def rule_rows(run: Path, voxels: int | None) -> list[dict]:
    config = run_config(run)
    datamodule = run_datamodule(config)
    shape = tuple(config.data.preprocessing.shape)
    stride = linear_stride(shape, voxels or config.arch.projection_voxels)
    cohort = find_cohort(datamodule.splits["train"]["target"]["path"])
    truth = (None if cohort is None else
             pd.read_csv(cohort.ground_truth).set_index("subject_id")["u_head"])
    scans = {}  # (split, role) → (table, pooled volumes [n, V])
    for split, role in [("train", "target"), ("train", "background"), ("val", "target"),
                        ("test", "target")]:
        if split in datamodule.splits:
            table, volumes = split_volumes(datamodule, split, role, factor=1)
            pooled = coarse_pool(torch.from_numpy(volumes).view(-1, 1, *shape), stride)
            scans[split, role] = table, pooled.flatten(1).double().numpy()
    target, background = scans["train", "target"][1], scans["train", "background"][1]
    centre = background.mean(0)
    healthy = principal_axes(background, config.shared_dim)
    target_rest, background_rest = (outside(rows, healthy, centre)
                                    for rows in (target, background))
    contrast, salient = float(config.initialise.contrast), config.salient_dim
    _, axes = contrastive_components(target_rest, background_rest, salient, contrast,
                                     about=centre)
    held_out = np.median(split_half_contrasts(target_rest, background_rest, salient,
                                              contrast)[1], 0)
    kept = {"earlier": earlier_rule(target_rest, background_rest, salient, contrast),
            "current": replicated_components(target_rest, background_rest, salient, contrast)}
    rows = []
    for rule, k in kept.items():
        row = {"run": str(run), "rule": rule, "kept": k}
        for split in ("val", "test"):
            if (split, "target") in scans and k:
                table, rows_pooled = scans[split, "target"]
                codes = (outside(rows_pooled, healthy, centre) - centre) @ axes[:, :k]
                head = None if truth is None else truth.reindex(table["subject_id"]).to_numpy()
                row |= {f"{name}_{split}": value for name, value in
                        scores(codes, table["group"], head).items()}
        row["held_out"] = " ".join(f"{value:.4f}" for value in held_out[:4])
        rows.append(row)
        print(row, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--voxels", type=int, default=4096,
                        help="the salient projection's voxel budget (0: each run's own)")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/replication_rule"))
    args = parser.parse_args()
    table = pd.DataFrame([row for run in args.runs for row in rule_rows(run, args.voxels)])
    columns = ["run", "rule", "kept", *[f"{m}_{s}" for s in ("val", "test")
                                        for m in ("ari", "r2_head")], "held_out"]
    text = ["# The linear start's replication rule, earlier and current", "",
            "Command: `" + " ".join(["python experiments/replication_rule.py",
                                     *map(str, args.runs), "--voxels", str(args.voxels),
                                     "--out", str(args.out)]) + "`",
            "", " ".join(__doc__.split("\n\n")[2].split()), "",
            markdown_table(table.reindex(columns=columns).round(3))]
    args.out.with_suffix(".md").write_text("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
