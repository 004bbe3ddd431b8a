"""Brain-age figures: predicted against true age, BAG per group, the selected sets' ages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from neurocvae.data.cohort import HEALTHY
from neurocvae.figures import plt, save_figure


def _groups(table: pd.DataFrame) -> list[str]:
    """The table's groups, the controls (HC) first, the others in order of appearance."""
    return sorted(table["group"].unique(), key=lambda g: g != HEALTHY)


def plot_predictions(table: pd.DataFrame, path: Path, *, title: str = "") -> Path:
    """Predicted (left) and corrected (right) against true age, one colour per group."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), sharex=True, sharey=True)
    lo, hi = table["age"].min() - 2, table["age"].max() + 2
    for ax, column, title in ((axes[0], "brain_age", "predicted (raw)"),
                              (axes[1], "corrected_age", "after bias correction")):
        for g in _groups(table):
            rows = table[table["group"] == g]
            ax.scatter(rows["age"], rows[column], s=7, alpha=0.6, label=g)
        ax.plot([lo, hi], [lo, hi], color="black", lw=0.8, label="identity")
        ax.set(title=title, xlabel="age (years)", xlim=(lo, hi))
    axes[0].set_ylabel("brain age (years)")
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def plot_bag_by_group(table: pd.DataFrame, path: Path) -> Path:
    """Box plot of the corrected brain-age gap per group, points jittered on top."""
    groups = _groups(table)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    values = [table.loc[table["group"] == g, "bag"].to_numpy() for g in groups]
    ax.boxplot(values, showfliers=False)
    ax.set_xticks(range(1, len(groups) + 1), groups)
    jitter = np.random.default_rng(0)
    for i, v in enumerate(values, start=1):
        ax.scatter(i + jitter.uniform(-0.15, 0.15, len(v)), v, s=5, alpha=0.5)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_ylabel("brain-age gap (years)")
    return save_figure(fig, path)


def plot_age_histograms(targets: pd.DataFrame, background: pd.DataFrame, path: Path, *,
                        bin_years: float = 1.0) -> Path:
    """Age histograms of the target and background sets on the matching bins."""
    ages = pd.concat([targets["age"], background["age"]])
    edges = np.arange(np.floor(ages.min() / bin_years),
                      np.floor(ages.max() / bin_years) + 2) * bin_years
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    ax.hist([targets["age"], background["age"]], bins=edges,
            label=[f"target (n={len(targets)})", f"background (n={len(background)})"])
    ax.set(xlabel="age (years)", ylabel="subjects")
    ax.legend(fontsize=8)
    return save_figure(fig, path)
