"""The detection limit: the default model against contrastive PCA on cohorts whose disease
patterns are weaker or stronger than the quick preset's.

Reads benchmark folders (each `neurocvae-benchmark` output: `cohort/`, `runs/cvae/seed*/eval/`)
under ROOT, measures each cohort's disease strength f (the share of the patients' within-brain
voxel variance due to the planted patterns, from their healthy twins), and writes a table and a
plot of salient k-means ARI and Kendall τ with severity against f, every seed listed.

    python experiments/detection_limit.py ROOT [--out experiments/results/detection_limit]

ROOT: every subfolder with a `cohort/` is one cohort, named by the folder (as left by
experiments/issue15_gpu.sh: quick/ the 1× cohort, strength_*/ the others).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from neurocvae.evaluation.report import headline
from neurocvae.figures import plt, save_figure


def disease_fraction(cohort: Path) -> float:
    """f = Σ_v Var_i[x_i − twin_i] / Σ_v Var_i[x_i] over the patients, within the brain."""
    truth = pd.read_csv(cohort / "ground_truth.csv")
    patients = truth[truth["twin_path"].notna()]
    volumes = np.stack([nib.load(cohort / p).get_fdata(dtype=np.float32)
                        for p in patients["path"]])
    twins = np.stack([nib.load(cohort / p).get_fdata(dtype=np.float32)
                      for p in patients["twin_path"]])
    brain = volumes.mean(0) > 0
    return float((volumes - twins).var(0)[brain].sum() / volumes.var(0)[brain].sum())


def cohort_rows(folder: Path) -> list[dict]:
    f = disease_fraction(folder / "cohort")
    rows = []
    for path in sorted((folder / "runs" / "cvae").glob("seed*/eval/metrics.json")):
        metrics = json.loads(path.read_text())
        rows.append({"cohort": folder.name, "f": f, "method": "model",
                     "seed": int(path.parts[-3][4:]), **headline(metrics)})
        for name, scores in metrics.get("baselines", {}).items():
            if name == "cpca" and not any(r["method"] == "cpca" for r in rows):
                rows.append({"cohort": folder.name, "f": f, "method": "cpca", "seed": None,
                             **headline(scores)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--out", type=Path, default=Path("experiments/results/detection_limit"))
    args = parser.parse_args()
    folders = sorted(folder for folder in args.root.iterdir() if (folder / "cohort").is_dir())
    table = pd.DataFrame([r for folder in folders for r in cohort_rows(folder)])
    table = table.sort_values(["f", "method", "seed"])
    columns = ["cohort", "f", "method", "seed", "ari_s", "tau_s_severity", "active_s",
               "r2_head_s", "auroc_z", "gain", "map_peak_mm"]
    table[columns].to_csv(args.out.with_suffix(".csv"), index=False)
    summary = table.groupby(["f", "method"])[["ari_s", "tau_s_severity"]].agg(["mean", "std"])
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, metric in zip(axes, ["ari_s", "tau_s_severity"], strict=True):
        for method, marker in (("model", "o"), ("cpca", "s")):
            part = table[table["method"] == method]
            ax.scatter(part["f"] * 100, part[metric].fillna(0), marker=marker, label=method,
                       alpha=0.7)
            means = summary.xs(method, level="method")[(metric, "mean")].fillna(0)
            ax.plot(means.index * 100, means, alpha=0.5)
        ax.set(xscale="log", xlabel="disease strength f (%)", ylabel=metric)
        ax.legend()
    save_figure(figure, args.out.with_suffix(".png"))
    def cell(value: float, digits: int = 3) -> str:
        return "–" if pd.isna(value) else f"{value:.{digits}f}"

    lines = [f"| {r.cohort} | {r.f:.2%} | {r.method} | {'' if pd.isna(r.seed) else int(r.seed)}"
             f" | {cell(r.ari_s)} | {cell(r.tau_s_severity)} | {cell(r.active_s, 0)}"
             f" | {cell(r.r2_head_s)} | {cell(r.auroc_z)} | {cell(r.gain)} |"
             for r in table.itertuples()]
    args.out.with_suffix(".md").write_text("\n".join(
        ["| cohort | f | method | seed | ARI_s | τ_s,severity | active_s | R²_s,head | AUROC_z "
         "| gain |", "|---|---|---|---|---|---|---|---|---|---|", *lines]) + "\n")
    print(summary.round(3).to_string())


if __name__ == "__main__":
    main()
