"""Cohort report: who is in the cohort, what the scans look like, and where groups differ.

For every disease group, the age-matched mean difference map (group − its nearest-age healthy
controls) shows where the group departs from them; on a synthetic cohort the planted regions are
marked and the concentration of the difference inside them is tabulated.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from matplotlib.patches import Circle

from neurocvae.data.cohort import HEALTHY
from neurocvae.errors import InputError
from neurocvae.figures import plt, save_figure
from neurocvae.progress import progress
from neurocvae.synthetic.layout import CohortFolder
from neurocvae.synthetic.renderer import read_volume
from neurocvae.synthetic.strength import variance_fraction
from neurocvae.synthetic.warp import CORE_WEIGHT

# Anterior horn, body and atrium of each lateral ventricle in MNI152 (as in conf/synth.yaml).
VENTRICLE_CENTRES_MM = ((-5, 8, 12), (5, 8, 12), (-11, -18, 22), (11, -18, 22), (-20, -38, 15),
                        (20, -38, 15))
VENTRICLE_RADIUS_MM = 15.0
CSF_THRESHOLD = 0.45  # below this (tissue ≈ 0.65–0.85, ventricles ≈ 0.3) a voxel counts as CSF
N_EXAMPLES = 5
OVERLAY_FLOOR = 0.1  # difference maps hide |Δ| below this fraction of their maximum
MATCHED_CONTROLS = 5  # each patient is compared with its 5 nearest-age same-sex controls


def age_matched_controls(patient_ages: np.ndarray, control_ages: np.ndarray,
                         k: int = MATCHED_CONTROLS) -> np.ndarray:
    """Indices of each patient's k nearest-age controls (fewer if fewer exist): int [n, k]."""
    if len(control_ages) == 0:
        raise InputError("no controls to match patients against")
    distance = np.abs(patient_ages[:, None] - control_ages[None, :])
    return np.argsort(distance, axis=1, kind="stable")[:, : min(k, len(control_ages))]


def difference_weights(table: pd.DataFrame, group: str, controls: str = HEALTHY) -> np.ndarray:
    """Per-row weights w with Σ_i w_i x_i = mean over the group's patients of (patient − mean of
    its matched controls): float [n_rows].

    Each patient is matched to its `MATCHED_CONTROLS` nearest-age healthy controls (group
    `controls`) of the same sex (of any sex when the cohort has no control of that sex).
    """
    groups, sexes = table["group"].to_numpy(), table["sex"].astype(str).to_numpy()
    ages = table["age"].to_numpy(dtype=float)
    patients = np.flatnonzero(groups == group)
    weights = np.zeros(len(table))
    weights[patients] += 1 / len(patients)
    for sex in np.unique(sexes[patients]):
        cases = patients[sexes[patients] == sex]
        pool = np.flatnonzero((groups == controls) & (sexes == sex))
        if len(pool) == 0:
            pool = np.flatnonzero(groups == controls)
        match = pool[age_matched_controls(ages[cases], ages[pool])]
        np.add.at(weights, match, -1 / (len(patients) * match.shape[1]))
    return weights


def ventricle_region(shape: tuple[int, ...], affine: np.ndarray,
                     centres_mm=VENTRICLE_CENTRES_MM) -> np.ndarray:
    """Voxels within 15 mm of the lateral-ventricle centres: bool [X, Y, Z]."""
    ijk = np.moveaxis(np.indices(shape), 0, -1)
    points = ijk @ affine[:3, :3].T + affine[:3, 3]
    near = np.zeros(shape, dtype=bool)
    for centre in centres_mm:
        near |= np.linalg.norm(points - np.asarray(centre), axis=-1) < VENTRICLE_RADIUS_MM
    return near


def ventricle_volume_ml(volume: np.ndarray, region: np.ndarray, voxel_ml: float) -> float:
    """Volume (ml) of CSF-dark brain voxels (0 < x < 0.45) inside a ventricle region."""
    return float(((volume > 0) & (volume < CSF_THRESHOLD) & region).sum() * voxel_ml)


def load_cohort(cohort_dir: Path) -> tuple[pd.DataFrame, dict]:
    """The ground-truth table (or manifest) of a cohort folder and its recipe (if synthetic)."""
    folder = CohortFolder(cohort_dir)
    for path in (folder.ground_truth, folder.manifest):
        if path.is_file():
            table = pd.read_csv(path, keep_default_na=False)
            break
    else:
        raise InputError(f"{cohort_dir}: no manifest.csv or ground_truth.csv")
    return table, folder.read_recipe()


@dataclass
class CohortStatistics:
    """What one read of every volume gathers: per-group voxel sums, each disease group's
    age-matched difference map, the example slices, the moments of (patient − twin) and of the
    patients (Σd, Σd², Σx, Σx²) and each subject's ventricle volume (ml)."""

    sums: dict[str, np.ndarray]
    differences: dict[str, np.ndarray]
    example_slices: dict[int, np.ndarray]
    moments: np.ndarray
    ventricles: np.ndarray


def read_statistics(cohort_dir: Path, table: pd.DataFrame, groups: list[str],
                    diseases: list[str], examples: list[int], affine: np.ndarray,
                    shape: tuple[int, ...], ventricle_centres: list,
                    controls: str = HEALTHY) -> CohortStatistics:
    """Read every volume (and twin) of `table` once, two at a time, and gather the statistics
    (disease groups against the group `controls`)."""
    weights = {g: difference_weights(table, g, controls) for g in diseases}
    stats = CohortStatistics(sums={g: np.zeros(shape, np.float64) for g in groups},
                             differences={g: np.zeros(shape, np.float64) for g in diseases},
                             example_slices={}, moments=np.zeros((4, *shape)),
                             ventricles=np.zeros(len(table)))
    has_twin = table.get("twin_path", pd.Series("", index=table.index)).astype(str) != ""
    region = ventricle_region(shape, affine, ventricle_centres)
    voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000

    def load(i: int) -> tuple[int, np.ndarray, np.ndarray | None]:
        path = cohort_dir / table["path"].iloc[i]
        volume = read_volume(path)
        if volume.shape != shape:
            raise InputError(f"{path}: shape {volume.shape}; expected {shape} like "
                             f"{cohort_dir / table['path'].iloc[0]}")
        twin = read_volume(cohort_dir / table["twin_path"].iloc[i]) if has_twin.iloc[i] else None
        return i, volume, twin

    with ThreadPoolExecutor(2) as pool, progress("reading volumes", len(table)) as advance:
        for i, volume, twin in pool.map(load, range(len(table))):
            stats.sums[table["group"].iloc[i]] += volume
            for g in diseases:
                if weights[g][i]:
                    stats.differences[g] += weights[g][i] * volume
            if i in examples:
                stats.example_slices[i] = volume[:, :, shape[2] // 2]
            if twin is not None:
                d = volume - twin
                stats.moments += np.stack([d, d * d, volume, volume * volume])
            stats.ventricles[i] = ventricle_volume_ml(volume, region, voxel_ml)
            advance()
    return stats


def _difference_section(differences: dict[str, np.ndarray], controls_mean: np.ndarray,
                        truth: dict, recipe: dict, brain: np.ndarray | None,
                        affine: np.ndarray, out_dir: Path, controls: str = HEALTHY) -> list[str]:
    """The report's section on where each disease group differs from healthy controls (maps
    written as PNG beside it)."""
    lines = ["## Where each disease group differs from healthy controls", "",
             f"Each patient is compared with its {MATCHED_CONTROLS} nearest-age healthy "
             "controls of the same sex; the map is the mean over patients of (patient − "
             f"mean of its controls), drawn over the {controls} mean where |difference| is at "
             f"least {OVERLAY_FLOOR:.0%} of its maximum. Blue: lower intensity in patients "
             "(tissue loss). "
             + ("Circles mark the planted regions (radius 2σ) of the group's patterns. "
                if truth else "")
             + ("Groups with a planted age acceleration also show it as faint diffuse loss "
                "(cortical rim, around the ventricles). " if recipe.get("age_acceleration")
                else "")
             + "Maps in NIfTI: `difference_<group>.nii.gz`.", ""]
    for g, difference in differences.items():
        _plot_difference(difference, controls_mean, g, truth, affine,
                         out_dir / f"difference_{g}.png", controls)
        lines += [f"![{g} − {controls}](difference_{g}.png)", ""]
    if truth:
        lines += ["### Concentration in the planted regions", "",
                  "Mean |difference| inside each planted region (within 2σ of its centre) "
                  "over the mean |difference| in the rest of the brain (outside every "
                  "pattern's support). A group carries a pattern when its ratio is high.", "",
                  _concentration_table(differences, truth, brain), ""]
    return lines


def write_cohort_report(cohort_dir: str | Path, out_dir: str | Path | None = None, *,
                        shares: dict[str, float] | None = None) -> Path:
    """Write `report.md`, its figures and difference maps for a cohort folder; return its path.
    `shares`: each nuisance factor's share of the controls' voxel variance
    (`neurocvae.synthetic.variance.variance_shares`), shown beside the disease's."""
    cohort_dir = Path(cohort_dir)
    out_dir = Path(out_dir) if out_dir else cohort_dir / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    table, recipe = load_cohort(cohort_dir)
    controls = recipe.get("controls", HEALTHY)
    present = set(table["group"])
    order = [*recipe.get("groups", {}), controls, *table["group"].unique()]
    groups = [g for g in dict.fromkeys(order) if g in present]  # the recipe's order
    diseases = [g for g in groups if g != controls and controls in groups]
    first = nib.load(cohort_dir / table["path"].iloc[0])
    shape, affine = first.shape, first.affine
    examples = _example_rows(table, groups)
    stats = read_statistics(cohort_dir, table, groups, diseases, examples, affine, shape,
                            recipe.get("ventricle_centres_mm", VENTRICLE_CENTRES_MM), controls)
    means = {g: stats.sums[g] / (table["group"] == g).sum() for g in groups}
    for g, diff in stats.differences.items():
        nib.save(nib.Nifti1Image(diff.astype(np.float32), affine),
                 out_dir / f"difference_{g}.nii.gz")
    truth = _truth_maps(cohort_dir, recipe)
    mask_path = CohortFolder(cohort_dir).brain_mask
    brain = read_volume(mask_path) > 0.5 if mask_path.is_file() else None

    lines = [f"# Cohort report: `{cohort_dir.name}`", ""]
    if recipe:
        grid = recipe["grid"]
        lines += [f"Synthetic cohort, seed {recipe['seed']}, grid `{grid['name']}` "
                  f"({grid['voxel_size']:g} mm, {'×'.join(map(str, grid['shape']))}).", ""]
    lines += ["## Groups", "", _group_table(table, groups), ""]
    _plot_montage(table, groups, examples, stats.example_slices, means, out_dir / "montage.png")
    lines += ["## Scans", "",
              f"Axial mid-slice (z = {shape[2] // 2}) of {N_EXAMPLES} subjects per group, youngest "
              "to oldest, and the group mean (right). R is on the right.", "",
              "![montage](montage.png)", ""]
    if diseases:
        lines += _difference_section(stats.differences, means[controls], truth, recipe, brain,
                                     affine, out_dir, controls)
    twins = int((table.get("twin_path", pd.Series("", index=table.index)).astype(str) != "").sum())
    if twins:
        within = brain if brain is not None else stats.moments[2] > 0
        f = variance_fraction(stats.moments[:, within], twins)
        lines += ["## Disease strength", "",
                  f"Fraction of the patients' within-brain voxel variance due to the planted "
                  f"patterns (x − healthy twin): **f = {f:.2%}** over {twins} patients.", ""]
    if shares:
        lines += ["## Where the variance comes from", "",
                  f"Share of the {controls} scans' within-brain voxel variance that holding each "
                  "planted factor fixed removes (a sample of them rendered again, on a grid of "
                  "4 mm at the finest; factors interact, so the shares need not add up to 1), "
                  "and the disease's share of the patients' variance (f above).", "",
                  "| factor | share |", "|---|---|",
                  *(f"| {factor} | {share:.1%} |" for factor, share in shares.items()),
                  *([f"| disease (patients) | {f:.1%} |"] if twins else []), ""]
    _plot_ventricles(table, groups, stats.ventricles, out_dir / "ventricles.png")
    lines += ["## Ageing", "",
              f"Ventricle volume (CSF-dark voxels within {VENTRICLE_RADIUS_MM:g} mm of the lateral "
              f"ventricles) against age; Spearman ρ in {controls} = "
              f"{_spearman(table, stats.ventricles, controls):.2f}.", "",
              "![ventricles](ventricles.png)", ""]
    report = out_dir / "report.md"
    report.write_text("\n".join(lines))
    return report


def _example_rows(table: pd.DataFrame, groups: list[str]) -> list[int]:
    rows = []
    for g in groups:
        members = table.index[table["group"] == g].to_numpy()
        by_age = members[np.argsort(table.loc[members, "age"].to_numpy(), kind="stable")]
        picks = np.linspace(0, len(by_age) - 1, min(N_EXAMPLES, len(by_age))).astype(int)
        rows += list(by_age[picks])
    return rows


def _group_table(table: pd.DataFrame, groups: list[str]) -> str:
    header = "| group | n | age mean ± SD (range) | male | sites |"
    rows = [header, "|---|---|---|---|---|"]
    for g in groups:
        members = table[table["group"] == g]
        age = members["age"].astype(float)
        counts = members["site"].value_counts().sort_index()
        sites = ", ".join(f"{s} {n}" for s, n in counts.items())
        rows.append(f"| {g} | {len(members)} | {age.mean():.1f} ± {age.std():.1f} "
                    f"({age.min():.0f}–{age.max():.0f}) | {(members['sex'] == 'M').mean():.0%} "
                    f"| {sites} |")
    return "\n".join(rows)


def _truth_maps(cohort_dir: Path, recipe: dict) -> dict[str, dict]:
    """Planted patterns of a synthetic cohort: weight map, centre, σ and groups, by name."""
    truth = {}
    folder = CohortFolder(cohort_dir)
    for name, planted in folder.planted_patterns().items():
        path = folder.pattern_map(name)
        if path.is_file():
            truth[name] = {**recipe["patterns"][name], **planted, "weight": read_volume(path)}
    return truth


def concentration(difference: np.ndarray, weight: np.ndarray, brain: np.ndarray,
                  support: np.ndarray) -> float:
    """Mean |difference| in a pattern's planted region over the mean elsewhere in the brain."""
    inside = np.abs(difference[weight >= CORE_WEIGHT]).mean()
    outside = np.abs(difference[brain & ~support]).mean()
    return float(inside / outside)


def _concentration_table(differences: dict[str, np.ndarray], truth: dict[str, dict],
                         brain: np.ndarray) -> str:
    names = list(truth)
    support = np.logical_or.reduce([truth[n]["weight"] > 0 for n in names])
    rows = ["| group | " + " | ".join(f"pattern {n} ratio" for n in names) + " |",
            "|---|" + "---|" * len(names)]
    for g, diff in differences.items():
        cells = []
        for n in names:
            ratio = concentration(diff, truth[n]["weight"], brain, support)
            mark = " (planted)" if g in truth[n]["groups"] else ""
            cells.append(f"{ratio:.1f}{mark}")
        rows.append(f"| {g} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _spearman(table: pd.DataFrame, ventricles: np.ndarray, controls: str) -> float:
    healthy = (table["group"] == controls).to_numpy()
    if healthy.sum() < 3:
        return float("nan")
    ages = table.loc[healthy, "age"].astype(float)
    return float(pd.Series(ventricles[healthy]).corr(ages.reset_index(drop=True),
                                                     method="spearman"))


def _slice_image(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    return np.take(volume, index, axis=axis).T  # rows: the later axis, shown bottom-up


def _plot_montage(table, groups, examples, slices, means, path: Path) -> None:
    fig, axes = plt.subplots(len(groups), N_EXAMPLES + 1,
                             figsize=(1.9 * (N_EXAMPLES + 1), 2.2 * len(groups)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for r, g in enumerate(groups):
        members = [i for i in examples if table["group"].iloc[i] == g]
        for c, i in enumerate(members):
            axes[r, c].imshow(slices[i].T, cmap="gray", origin="lower", vmin=0, vmax=1)
            axes[r, c].set_title(f"{table['subject_id'].iloc[i]}\n{table['age'].iloc[i]:.0f} y",
                                 fontsize=7)
        mean = means[g]
        axes[r, -1].imshow(mean[:, :, mean.shape[2] // 2].T, cmap="gray", origin="lower",
                           vmin=0, vmax=1)
        axes[r, -1].set_title(f"{g} mean", fontsize=8)
        axes[r, 0].text(-0.15, 0.5, g, transform=axes[r, 0].transAxes, rotation=90,
                        va="center", ha="right", fontsize=10)
    save_figure(fig, path)


def _plot_difference(diff, background, group, truth, affine, path: Path,
                     controls: str = HEALTHY) -> None:
    """Orthogonal slices through each planted centre of the group (else the peak |difference|)."""
    inverse = np.linalg.inv(affine)
    centres = {n: p["centre_mm"] for n, p in truth.items() if group in p["groups"]}
    if not centres:
        peak = np.unravel_index(np.argmax(np.abs(diff)), diff.shape)
        centres = {"peak": (affine[:3, :3] @ peak + affine[:3, 3]).tolist()}
    limit = float(np.abs(diff).max()) or 1.0
    fig, axes = plt.subplots(len(centres), 3, figsize=(9, 3.1 * len(centres)), squeeze=False)
    for r, (name, centre) in enumerate(centres.items()):
        voxel = np.rint(inverse[:3, :3] @ centre + inverse[:3, 3]).astype(int)
        voxel = np.clip(voxel, 0, np.asarray(diff.shape) - 1)
        for c, (axis, label) in enumerate(((2, "axial"), (1, "coronal"), (0, "sagittal"))):
            ax = axes[r, c]
            ax.imshow(_slice_image(background, axis, voxel[axis]), cmap="gray", origin="lower",
                      vmin=0, vmax=1)
            visible = (background > 0) & (np.abs(diff) >= OVERLAY_FLOOR * limit)
            shown = ax.imshow(_slice_image(np.where(visible, diff, np.nan), axis, voxel[axis]),
                              cmap="RdBu_r", origin="lower", vmin=-limit, vmax=limit, alpha=0.85)
            if name in truth:
                in_plane = [a for a in range(3) if a != axis]
                sigma_vox = truth[name]["sigma_mm"] / abs(affine[0, 0])
                ax.add_patch(Circle((voxel[in_plane[0]], voxel[in_plane[1]]), 2 * sigma_vox,
                                    fill=False, color="yellow", lw=1))
            ax.set_title(f"{label}, {name} at {[round(v) for v in centre]} mm", fontsize=8)
            ax.axis("off")
    fig.colorbar(shown, ax=axes, shrink=0.7, label=f"{group} − matched {controls}")
    fig.suptitle(f"{group}: age- and sex-matched mean difference from {controls}")
    save_figure(fig, path, tight=False)


def _plot_ventricles(table, groups, ventricles, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for g in groups:
        members = (table["group"] == g).to_numpy()
        ax.scatter(table.loc[members, "age"], ventricles[members], s=8, label=g, alpha=0.7)
    ax.set_xlabel("age (years)")
    ax.set_ylabel("ventricle volume (ml)")
    ax.legend(fontsize=7)
    save_figure(fig, path)
