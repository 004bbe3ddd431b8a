"""A benchmark's results (one row per arm and seed) as mean ± SD per arm: markdown and a figure."""

from __future__ import annotations

import math
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from scipy.spatial.distance import pdist
from scipy.stats import kendalltau

from neurocvae.evaluation.report import COLUMN_NOTES, markdown_table
from neurocvae.evaluation.scores import active_columns
from neurocvae.figures import plt, save_figure

TABLES = {  # title → headline columns
    "Disease groups in each space (higher salient, lower shared is better)":
        ("active_s", "active_z", "ari_s", "ari_z", "delta_ari", "gmm_ari_s", "acc_s",
         "silhouette_s", "silhouette_z", "knn_bacc_s", "tau_s_severity", "tau_z_severity"),
    "Nuisance and reconstruction (leakage low; auroc_z near 0.5)":
        ("tau_s_warp", "tau_z_warp", "tau_s_age", "r2_age_s", "r2_age_z", "r2_warp_s",
         "r2_head_s", "site_bacc_s", "auroc_s", "auroc_z", "energy_bg_tg"),
    "Reconstruction and maps (ve high; gain near 1; map_peak_mm small)":
        ("ve", "twin_error", "cf_error", "gain", "map_r", "map_peak_mm", "seconds"),
}
FIGURE = ("active_s", "ari_s", "tau_s_severity", "tau_s_warp", "r2_age_s", "auroc_z")
REFERENCE = """Reference (Aglinskas, Bergeron & Anzellotti, planted-truth simulation,
N = 1000 + 1000, one disorder): τ(salient, disease) **0.21**, leakage
τ(salient, shared factor) **0.15**, τ(shared, shared factor) **0.48**. Their shared factor
is a warp like our `u_warp`; their disease factor is our severity (here τ within each subtype,
averaged)."""


def mean_sd(results: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Per arm (in order of appearance): seeds, diverged runs, and 'mean ± SD' per column."""
    rows = []
    for arm, runs in results.groupby("arm", sort=False):
        ok = runs[~runs["diverged"].astype(bool)]
        row = {"arm": arm, "seeds": len(runs), "diverged": int(runs["diverged"].sum())}
        for column in columns:
            values = ok[column].dropna().to_numpy(dtype=float) if column in ok else []
            row[column] = (f"{values.mean():.3f} ± {values.std(ddof=1):.3f}" if len(values) > 1
                           else f"{values[0]:.3f}" if len(values) == 1 else "–")
        rows.append(row)
    return pd.DataFrame(rows)


def cross_seed_stability(latents: list[pd.DataFrame], space: str) -> float:
    """Mean pairwise Kendall τ between the seeds' distance matrices of the test targets' codes
    in `space` (docs/science.md §7), on each seed's active dimensions (variance over the test
    targets > ACTIVE_VARIANCE): 1 when every seed arranges the patients alike; nan with fewer
    than two seeds whose space has an active dimension."""
    matrices = []
    for table in latents:
        targets = table[table["role"] == "target"].sort_values("subject_id")
        active = active_columns(targets, space)
        if active:
            matrices.append(pdist(targets[active].to_numpy()))
    taus = [kendalltau(a, b).statistic for a, b in combinations(matrices, 2)]
    return float(np.mean(taus)) if taus else math.nan


def stability_table(latents: dict[str, list[pd.DataFrame]]) -> pd.DataFrame:
    """Per arm: the cross-seed stability of each space (`stability_s`, `stability_z`)."""
    return pd.DataFrame([{"arm": arm, "seeds": len(tables),
                          "stability_s": cross_seed_stability(tables, "salient"),
                          "stability_z": cross_seed_stability(tables, "shared")}
                         for arm, tables in latents.items()])


def summary_markdown(results: pd.DataFrame, columns: list[str], cfg: DictConfig,
                     command: str, minutes: float, names: dict[str, str],
                     stability: pd.DataFrame | None = None) -> str:
    """benchmark.md: the preset, the command, both tables, the reference values; `names` are
    the output files' (`benchmark.table_names`)."""
    arms = {a: o for a, o in OmegaConf.to_container(cfg.arms).items() if a in set(results.arm)}
    text = [f"# neurocvae-benchmark: preset `{cfg.name}`", "",
            f"Command: `{command}`; {minutes:.1f} min wall time in total. Results of every "
            f"run: `{names['results']}`; figure: `{names['figure']}`.", "",
            f"Cohort (neurocvae-synth overrides): `{' '.join(cfg.cohort)}`; splits "
            f"{dict(cfg.split_fractions)}; seeds {list(cfg.seeds)}; common training overrides "
            f"`{' '.join(cfg.train)}`.", "",
            "Arms: " + "; ".join(f"**{a}** `{' '.join(o) or '(defaults)'}`"
                                for a, o in arms.items())
            + ". Baselines are fitted once on the training split (seed-independent).", "",
            f"Mean ± SD over seeds, {cfg.get('split', 'test')} split; `seconds`: training and "
            "evaluation of one run.",
            "", COLUMN_NOTES, ""]
    for title, wanted in TABLES.items():
        chosen = [c for c in wanted if c in columns]
        text += [f"## {title}", "", markdown_table(mean_sd(results, chosen)), ""]
    if stability is not None and len(stability):
        text += ["## Cross-seed stability", "",
                 "Mean pairwise Kendall τ between the seeds' distance matrices of the test "
                 "targets' active codes (1 = every seed arranges the patients alike; – = fewer "
                 "than two seeds with an active dimension).", "",
                 markdown_table(stability), ""]
    text += [REFERENCE, ""]
    return "\n".join(text)


def plot_summary(results: pd.DataFrame, path: Path) -> Path:
    """Bars (mean) with SD whiskers per arm, one panel per key metric."""
    ok = results[~results["diverged"].astype(bool)]
    arms = list(dict.fromkeys(ok["arm"]))
    fig, axes = plt.subplots(1, len(FIGURE), figsize=(3.1 * len(FIGURE), 3.6), sharey=False)
    for ax, column in zip(axes, FIGURE, strict=True):
        stats = [ok.loc[ok["arm"] == a, column].astype(float) for a in arms]
        means = [v.mean() for v in stats]
        sds = [v.std(ddof=1) if v.count() > 1 else 0.0 for v in stats]
        ax.bar(range(len(arms)), np.nan_to_num(means), yerr=sds, color="tab:blue", alpha=0.8)
        ax.set_xticks(range(len(arms)), arms, rotation=60, ha="right", fontsize=7)
        ax.axhline(0, color="black", lw=0.5)
        ax.set_title(column, fontsize=9)
        if all(math.isnan(m) for m in means):
            ax.text(0.5, 0.5, "n/a", transform=ax.transAxes, ha="center")
    return save_figure(fig, path)
