"""Planted-ground-truth synthetic cohort built from the MNI152 template (docs/science.md §8).

Every subject carries the shared factors (age-driven ventricle enlargement and grey-matter loss,
head size, a shared local warp, a site with bias field, intensity scale and noise); patients add
their group's disease patterns at a per-subject severity. Each patient also gets a healthy twin:
the same subject rendered with the patterns off, used only for evaluation.
"""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

from neurocvae.data.cohort import MANIFEST_COLUMNS
from neurocvae.errors import InputError
from neurocvae.progress import progress
from neurocvae.synthetic.layout import CohortFolder
from neurocvae.synthetic.recipe import MAX_Z, Ages, Pattern, Recipe
from neurocvae.synthetic.template import BRAIN_THRESHOLD, Template
from neurocvae.synthetic.warp import (
    SUPPORT_SIGMAS,
    anatomy_displacement,
    bump_displacement,
    bump_weight,
    intensity_texture,
    scale_displacement,
)

INT16_SLOPE = 1 / 30000  # volumes are in [0, 1]: stored as int16 with a fixed scale factor
JITTER_STREAM = 1  # the random stream of the patterns' per-subject offsets
ANATOMY_STREAM = 2  # the random stream of the subjects' own anatomy
TEXTURE_STREAM = 3  # … and of their own intensity texture
MARGIN_MM = 20.0  # how far a warp may move a point: pattern boxes are widened by this


def _stratified(rng: np.random.Generator, n: int) -> np.ndarray:
    """n draws from U(0, 1), one in each of n equal strata, in random order: float [n]."""
    return (rng.permutation(n) + rng.random(n)) / n


def _stratified_normal(rng: np.random.Generator, n: int) -> np.ndarray:
    """Stratified N(0, 1) draws clipped to ±MAX_Z: float [n]."""
    return np.clip(ndtri(_stratified(rng, n)), -MAX_Z, MAX_Z)


def _ages(ages: Ages, rng: np.random.Generator, n: int) -> np.ndarray:
    """n stratified ages (years) from `ages`: float [n]."""
    if ages.normal:  # stratified within [min, max] of the normal's quantiles
        lo, hi = (ndtr((bound - ages.mean) / ages.sd) for bound in (ages.min, ages.max))
        return ages.mean + ages.sd * ndtri(lo + (hi - lo) * _stratified(rng, n))
    return ages.min + (ages.max - ages.min) * _stratified(rng, n)


def site_allocation(n: int, weights: list[float]) -> np.ndarray:
    """n site indices in proportion to `weights` (largest remainders), in site order."""
    share = np.asarray(weights, dtype=float) / sum(weights) * n
    counts = np.floor(share).astype(int)
    counts[np.argsort(counts - share, kind="stable")[:n - counts.sum()]] += 1
    return np.repeat(np.arange(len(weights)), counts)


def plan_cohort(recipe: Recipe) -> pd.DataFrame:
    """Draw every subject's planted factors: one row per subject, in a shuffled id order.

    Nuisance factors (age, sex, site, head size, shared warp, age-acceleration noise) are drawn
    by stratified sampling within each group, so groups differ systematically only by what the
    recipe plants: patterns and mean age acceleration, and the confounds it asks for (a group's
    own ages, share of males or mix of sites).

    Columns: subject_id, group, label (the group's place in the recipe, from 0), age, sex, site,
    delta (age acceleration, y), u_warp, u_head, severity_<pattern>, noise_seed, t (effective
    age in units), ventricle_scale, head_scale, path, twin_id, twin_path (empty for controls,
    or without twins), and for a pattern with `jitter_mm` > 0 its per-subject centre offset
    `shift_<pattern>_{x,y,z}_mm`; with `anatomy_rms_mm` > 0, the seed of each subject's own
    smooth deformation (`anatomy_seed`); with `texture` > 0, that of its own intensity texture
    (`texture_seed`).
    """
    rng = np.random.default_rng(recipe.seed)
    sites = [s.name for s in recipe.sites]
    blocks = []
    for label, (group, spec) in enumerate(recipe.groups.items()):
        n = spec.count
        n_male = round(n * recipe.male_fraction_of(group))
        mix = spec.site_mix
        site_of = (site_allocation(n, [mix.get(site, 0.0) for site in sites]) if mix
                   else np.arange(n) % len(sites))  # balanced
        block = pd.DataFrame({
            "group": [group] * n,
            "label": label,
            "age": np.round(_ages(recipe.ages_of(group), rng, n), 2),
            "sex": rng.permutation(np.array(["M"] * n_male + ["F"] * (n - n_male))),
            "site": [sites[i] for i in rng.permutation(site_of)],
            "delta": spec.age_acceleration
            + recipe.age_acceleration_sd * _stratified_normal(rng, n),
            "u_warp": _stratified_normal(rng, n),
            "u_head": _stratified_normal(rng, n),
        })
        for name in recipe.patterns:
            severity = rng.uniform(*recipe.severity_range, n)
            block[f"severity_{name}"] = severity if name in spec.patterns else 0.0
        block["noise_seed"] = rng.integers(0, 2**31 - 1, n)
        blocks.append(block)
    table = pd.concat(blocks, ignore_index=True)
    table = table.iloc[rng.permutation(len(table))].reset_index(drop=True)
    table.insert(0, "subject_id", [f"sub-{i + 1:05d}" for i in range(len(table))])

    table["t"] = (table["age"] + table["delta"] - recipe.reference_age) / recipe.years_per_unit
    table["ventricle_scale"] = 1 + recipe.ventricle_growth * table["t"]
    sex_sign = np.where(table["sex"] == "M", 0.5, -0.5)
    table["head_scale"] = (1 + recipe.head_size_residual_sd * table["u_head"]
                           if recipe.head_size_space == "registered"
                           else 1 + recipe.head_size_sd * table["u_head"]
                           + recipe.head_size_sex_difference * sex_sign)
    table["path"] = table["subject_id"].map(CohortFolder.volume_path)
    severity = table[[f"severity_{name}" for name in recipe.patterns]].to_numpy()
    has_twin = recipe.twins & (severity > 0).any(axis=1)
    table["twin_id"] = np.where(has_twin, table["subject_id"] + "-twin", "")
    table["twin_path"] = np.where(has_twin, table["twin_id"].map(CohortFolder.twin_path), "")
    if recipe.anatomy_rms_mm > 0:  # a stream apart: the other draws stay as without it
        anatomy = np.random.default_rng([recipe.seed, ANATOMY_STREAM])
        table["anatomy_seed"] = anatomy.integers(0, 2**31 - 1, len(table))
    if recipe.texture > 0:
        texture = np.random.default_rng([recipe.seed, TEXTURE_STREAM])
        table["texture_seed"] = texture.integers(0, 2**31 - 1, len(table))
    jitter = np.random.default_rng([recipe.seed, JITTER_STREAM])  # apart: the rest unchanged
    for name, pattern in recipe.patterns.items():
        if pattern.jitter_mm > 0:
            shift = pattern.jitter_mm * np.clip(jitter.standard_normal((len(table), 3)),
                                                -MAX_Z, MAX_Z)
            for axis, column in enumerate(shift_columns(name)):
                table[column] = np.round(shift[:, axis], 2)
    return table


def shift_columns(pattern: str) -> list[str]:
    """The plan's columns of a jittered pattern's per-subject centre offset (mm, x y z)."""
    return [f"shift_{pattern}_{axis}_mm" for axis in "xyz"]


def pattern_centres(subject: pd.Series, name: str, pattern: Pattern) -> list[np.ndarray]:
    """Where `subject` carries pattern `name`: its centres plus the subject's offset (mm)."""
    columns = shift_columns(name)
    offset = subject[columns].to_numpy(float) if columns[0] in subject else np.zeros(3)
    return [np.asarray(centre, dtype=float) + offset for centre in pattern.centres_mm]


class Renderer:
    """Renders subjects of one recipe on its grid (holds the template and precomputed fields)."""

    def __init__(self, recipe: Recipe):
        self.recipe = recipe
        self.grid = recipe.grid
        self.template = Template.load(recipe.grid.voxel_size)
        self.points = recipe.grid.points_mm()
        self.bias = {site.name: self._bias_field(i, site.bias_strength)
                     for i, site in enumerate(recipe.sites)}
        self.sites = {site.name: site for site in recipe.sites}

    def _bias_field(self, site_index: int, strength: float) -> np.ndarray:
        """1 + a 2nd-order polynomial in grid coordinates with max |deviation| = strength."""
        half = (np.asarray(self.grid.shape) - 1) / 2 * self.grid.voxel_size
        x, y, z = np.moveaxis((self.points - np.asarray(self.grid.centre_mm)) / half, -1, 0)
        terms = np.stack([x, y, z, x * x, y * y, z * z, x * y, x * z, y * z])
        coefficients = np.random.default_rng([self.recipe.seed, site_index]).standard_normal(9)
        field = np.tensordot(coefficients, terms, axes=1)
        return (1 + strength * field / np.abs(field).max()).astype(np.float32)

    def _add_bump(self, displacement: np.ndarray, centre, sigma_mm: float, amplitude: float):
        box = self.grid.box(centre, SUPPORT_SIGMAS * sigma_mm)
        displacement[box] += bump_displacement(self.points[box], centre, sigma_mm, amplitude)

    def render(self, subject: pd.Series, diseased: bool = True) -> np.ndarray:
        """One subject's volume in [0, 1]: float32 [X, Y, Z]. `diseased=False` gives its twin."""
        r = self.recipe
        severities = {name: float(subject[f"severity_{name}"]) if diseased else 0.0
                      for name in r.patterns}
        active = {name: p for name, p in r.patterns.items() if severities[name] > 0}
        displacement = scale_displacement(self.points, r.head_centre_mm,
                                          float(subject["head_scale"]))
        if r.anatomy_rms_mm > 0:  # the same in a patient and its twin
            displacement += anatomy_displacement(
                self.grid.shape, np.random.default_rng(int(subject["anatomy_seed"])),
                r.anatomy_rms_mm)
        for centre in r.ventricle_centres_mm:
            self._add_bump(displacement, centre, r.ventricle_sigma_mm,
                           1 / float(subject["ventricle_scale"]) - 1)
        self._add_bump(displacement, r.shared_warp_centre_mm, r.shared_warp_sigma_mm,
                       r.shared_warp_amplitude * float(subject["u_warp"]))
        centres = {name: pattern_centres(subject, name, p) for name, p in active.items()}
        for name, pattern in active.items():
            for centre in centres[name]:
                self._add_bump(displacement, centre, pattern.sigma_mm,
                               pattern.warp * severities[name])
        source = self.points + displacement  # where each voxel samples the template (pull-back)

        tissue = self.template.sample(source)
        x = tissue["t1"] - np.float32(r.gm_loss * float(subject["t"])) * tissue["gm"]
        for name, pattern in active.items():
            for centre in centres[name]:
                box = self.grid.box(centre, SUPPORT_SIGMAS * pattern.sigma_mm + MARGIN_MM)
                weight = bump_weight(source[box], centre, pattern.sigma_mm)
                loss = (np.float32(pattern.intensity * severities[name]) * weight
                        * tissue["gm"][box])
                x[box] *= 1 - loss
        if r.texture > 0:  # the same in a patient and its twin
            x *= 1 + np.float32(r.texture) * intensity_texture(
                self.grid.shape, np.random.default_rng(int(subject["texture_seed"])),
                r.texture_mm / self.grid.voxel_size)
        brain = tissue["t1"] > BRAIN_THRESHOLD
        x = np.clip(x, 0, None) * brain

        site = self.sites[subject["site"]]
        noise = np.random.default_rng(int(subject["noise_seed"])).standard_normal(
            self.grid.shape, dtype=np.float32)
        x = x * np.float32(site.intensity_scale) * self.bias[site.name]
        x += np.float32(site.noise_sd) * noise * brain
        return np.clip(x, 0, 1)

    def truth_maps(self) -> dict[str, np.ndarray]:
        """Nominal ground-truth maps on the grid: the brain mask and each pattern's weight g."""
        maps = {"brain_mask": self.template.sample(self.points)["t1"] > BRAIN_THRESHOLD}
        for name, pattern in self.recipe.patterns.items():
            maps[f"pattern_{name}"] = np.max([bump_weight(self.points, centre, pattern.sigma_mm)
                                              for centre in pattern.centres_mm], axis=0)
        return {k: v.astype(np.float32) for k, v in maps.items()}


def write_volume(path: Path, volume: np.ndarray, affine: np.ndarray) -> None:
    """Write a [0, 1] volume as int16 NIfTI with a fixed scale factor (identical values stay
    identical across files; 3e-5 resolution)."""
    image = nib.Nifti1Image(np.rint(volume / INT16_SLOPE).astype(np.int16), affine)
    image.header.set_slope_inter(INT16_SLOPE, 0.0)
    image.header.set_xyzt_units("mm")
    nib.save(image, path)


def read_volume(path: str | Path) -> np.ndarray:
    """A NIfTI volume as float32 [X, Y, Z] (scale factors applied)."""
    return np.asarray(nib.load(path).get_fdata(dtype=np.float32))


def write_subject(renderer: Renderer, subject: pd.Series, folder: Path) -> None:
    """Render and write one subject (and its twin, if it has one) under `folder`."""
    affine = renderer.grid.affine
    write_volume(folder / subject["path"], renderer.render(subject), affine)
    if subject["twin_path"]:
        write_volume(folder / subject["twin_path"], renderer.render(subject, False), affine)


_worker_renderer: Renderer | None = None  # one per worker process


def _init_worker(recipe: Recipe) -> None:
    global _worker_renderer
    _worker_renderer = Renderer(recipe)


def _write_in_worker(subject: pd.Series, folder: Path) -> None:
    assert _worker_renderer is not None
    write_subject(_worker_renderer, subject, folder)


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def check_destination(out_dir: Path, overwrite: bool) -> None:
    """Refuse to touch an existing folder unless `overwrite` and it holds a cohort of ours."""
    if not out_dir.exists() or (out_dir.is_dir() and not any(out_dir.iterdir())):
        return
    ours = CohortFolder(out_dir).is_cohort()
    if not overwrite:
        raise InputError(f"{out_dir} already exists and is not empty; pass overwrite=true to "
                         "replace it, or choose another out_dir")
    if not ours:
        raise InputError(f"{out_dir} exists and was not written by neurocvae-synth (no "
                         "recipe.json and manifest.csv); refusing to replace it even with "
                         "overwrite=true")


def generate_cohort(recipe: Recipe, out_dir: str | Path, *, overwrite: bool = False,
                    workers: int = 0) -> Path:
    """Render a cohort into `out_dir` and return it.

    Writes the layout of `CohortFolder`: volumes, twins, `manifest.csv` (MANIFEST_COLUMNS),
    `ground_truth.csv` (every planted factor), the truth maps (brain mask, pattern weights) and
    `recipe.json`. Everything is built in a staging folder beside `out_dir` and moved in at the end,
    so a failure leaves any earlier cohort untouched. `workers=0` uses every available core.
    """
    out_dir = Path(out_dir).resolve()
    check_destination(out_dir, overwrite)
    table = plan_cohort(recipe)

    staging = out_dir.parent / f".{out_dir.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staged = CohortFolder(staging)
    staged.make_folders()
    workers = min(workers or available_cores(), len(table))
    rows = [row for _, row in table.iterrows()]
    renderer = Renderer(recipe)
    with progress("rendering subjects", total=len(rows)) as advance:
        if workers == 1:
            for row in rows:
                write_subject(renderer, row, staging)
                advance()
        else:
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn"),
                                     initializer=_init_worker, initargs=(recipe,)) as pool:
                for _ in pool.map(_write_in_worker, rows, [staging] * len(rows), chunksize=4):
                    advance()
    for name, volume in renderer.truth_maps().items():
        write_volume(staged.truth / f"{name}.nii.gz", volume, recipe.grid.affine)

    table["recipe_hash"] = recipe.hash()
    table[list(MANIFEST_COLUMNS)].to_csv(staged.manifest, index=False)
    table.to_csv(staged.ground_truth, index=False)
    staged.recipe.write_text(json.dumps(
        {"hash": recipe.hash(), "recipe": recipe.to_dict()}, indent=2, default=str))

    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        out_dir.rename(old)
        staging.rename(out_dir)
        shutil.rmtree(old)
    else:
        staging.rename(out_dir)
    return out_dir
