"""Variance explained scan by scan: where a trained run and the PCA baseline differ.

    .venv/bin/python experiments/ve_by_scan.py RUN [RUN …] [--out experiments/results/ve_by_scan]

RUN: a `neurocvae-train` run folder (e.g. a benchmark's `runs/cvae/seed0`). For every scan of
the test split, the squared residual of the model's reconstruction (targets D([z, s]),
backgrounds D([z, 0]), as `neurocvae-eval`'s variance explained) and of a 10-component PCA of
the training scans (the benchmark's baseline), with the scan's own variance about the training
mean. `with_salient` is the model's residual with every scan read as a target and decoded
from D([z, s]), backgrounds included: how much of the model's residual is its refusal to
explain a control with salient images. Writes a table of each run's VE with and without the
scans that make most of the difference, and the scans with the largest gaps (the planted truth
beside them when the cohort has one).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.decomposition import PCA

from neurocvae.contrastive.build import load_module
from neurocvae.evaluation.evaluate import find_cohort, run_config, run_datamodule
from neurocvae.evaluation.report import markdown_table

COMPONENTS = 10
TRUTH = ["group", "age", "u_head", "head_scale", "u_warp"]


@torch.no_grad()
def residuals(run: Path, split: str = "test") -> pd.DataFrame:
    """One row per `split` scan: subject_id, role, model, with_salient and pca (‖x − x̂‖²),
    total (‖x − x̄‖², x̄ the training scans' mean)."""
    datamodule = run_datamodule(run_config(run))
    module = load_module(run / "checkpoints" / "best.ckpt")
    train = np.concatenate([batch["image"].flatten(1).numpy()
                            for role in ("target", "background")
                            for batch in datamodule.input_batches("train", role)])
    pca = PCA(COMPONENTS, random_state=0).fit(train)
    rows = []
    for role in ("target", "background"):
        for batch in datamodule.input_batches(split, role):
            images = batch["image"]
            shared, salient = module.latent_representation(images, "background")
            as_target = module.nets.target_shared(shared, salient)  # every scan read as a target
            full = module.nets.decode(as_target, salient).flatten(1).numpy()
            model = full if role == "target" else module.nets.decode(shared).flatten(1).numpy()
            x = images.flatten(1).numpy()
            linear = pca.inverse_transform(pca.transform(x))
            for i, subject in enumerate(batch["subject_id"]):
                rows.append({"subject_id": subject, "role": role,
                             "model": float(np.sum((x[i] - model[i]) ** 2)),
                             "with_salient": float(np.sum((x[i] - full[i]) ** 2)),
                             "pca": float(np.sum((x[i] - linear[i]) ** 2)),
                             "total": float(np.sum((x[i] - pca.mean_) ** 2))})
    table = pd.DataFrame(rows)
    cohort = find_cohort(datamodule.splits[split]["target"]["path"])
    if cohort is not None:
        truth = pd.read_csv(cohort.ground_truth).set_index("subject_id")
        table = table.join(truth[[c for c in TRUTH if c in truth]], on="subject_id")
    return table


def variance_explained(part: pd.DataFrame, column: str) -> float:
    return float(1 - part[column].sum() / part["total"].sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/ve_by_scan"))
    parser.add_argument("--worst", type=int, default=3, help="scans listed per run")
    args = parser.parse_args()
    summary, worst = [], []
    for run in args.runs:
        table = residuals(run)
        table["gap"] = table["model"] - table["pca"]
        ranked = table.sort_values("gap", ascending=False)
        without = table[table["subject_id"] != ranked["subject_id"].iloc[0]]
        summary.append({"run": str(run), "scans": len(table),
                        "ve_model": variance_explained(table, "model"),
                        "ve_pca": variance_explained(table, "pca"),
                        "ve_with_salient": variance_explained(table, "with_salient"),
                        "largest_gap_scan": ranked["subject_id"].iloc[0],
                        "its_share_of_the_gap": ranked["gap"].iloc[0] / table["gap"].sum(),
                        "ve_model_without_it": variance_explained(without, "model"),
                        "ve_pca_without_it": variance_explained(without, "pca")})
        worst.append(ranked.head(args.worst).assign(run=str(run)))
    text = ["# Variance explained scan by scan (test split)", "",
            "Command: `" + " ".join(["python experiments/ve_by_scan.py",
                                     *map(str, args.runs), "--out", str(args.out)]) + "`", "",
            "VE = 1 − Σ‖x − x̂‖² / Σ‖x − x̄_train‖² over the test scans (model: targets from "
            "D([z, s]), backgrounds from D([z, 0]); with_salient: every scan read as a target, "
            "from D([z, s]); "
            "pca: 10 components of the training scans). "
            "`its_share_of_the_gap`: the scan's model − PCA residual over the summed one (above "
            "1: the model beats PCA on the other scans together).", "",
            markdown_table(pd.DataFrame(summary)), "",
            "## The scans with the largest model − PCA residual", "",
            markdown_table(pd.concat(worst, ignore_index=True))]
    args.out.with_suffix(".md").write_text("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
