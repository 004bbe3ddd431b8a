"""A disease strength asked for: the pattern amplitudes scaled so that the disease variance
fraction f reaches a requested value.

f = Σ_v Var_i[x_i − x_i^h] / Σ_v Var_i[x_i] over brain voxels and patients i, x^h being the
patient's healthy twin (docs/science.md §8; the cohort report measures the same). Every pattern's
intensity loss and warp are multiplied by one factor k, each capped at its plausible bound at
the highest severity (an intensity loss of at most `MAX_INTENSITY`, a fold-free warp). f grows
with k, so k is found by bisection on a pilot: the recipe's own patients (its groups in
proportion, fixed seed), rendered with and without their disease. A request beyond the f of
every amplitude at its bound is refused with that f.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from neurocvae.errors import InputError
from neurocvae.synthetic.recipe import FOLD_FREE, Recipe
from neurocvae.synthetic.renderer import Renderer, plan_cohort

log = logging.getLogger(__name__)
MAX_INTENSITY = 0.95  # the largest intensity loss (fraction of GM intensity) at any severity
MAX_STEPS = 30


def scaled(recipe: Recipe, factor: float) -> Recipe:
    """The recipe with every pattern's intensity and warp multiplied by `factor`, each capped at
    its bound at the highest severity."""
    top = recipe.severity_range[1]
    patterns = {name: dataclasses.replace(
        p, intensity=min(p.intensity * factor, MAX_INTENSITY / top),
        warp=float(np.sign(p.warp)) * min(abs(p.warp) * factor, FOLD_FREE / top))
        for name, p in recipe.patterns.items()}
    return dataclasses.replace(recipe, patterns=patterns)


def largest_factor(recipe: Recipe) -> float:
    """The k beyond which no amplitude grows: every one at its bound."""
    top = recipe.severity_range[1]
    bounds = [bound for p in recipe.patterns.values()
              for bound in (MAX_INTENSITY / (p.intensity * top) if p.intensity else 0.0,
                            FOLD_FREE / (abs(p.warp) * top) if p.warp else 0.0)]
    return float(max(bounds))


def pilot(recipe: Recipe, patients: int) -> Recipe:
    """The recipe's patient groups in proportion, `patients` in all, no controls."""
    sick = {name: group for name, group in recipe.groups.items()
            if name != recipe.controls and group.count > 0}
    if not sick:
        raise InputError("disease_strength.f needs patients: every group but the controls "
                         f"({recipe.controls}) has a count of 0")
    total = sum(group.count for group in sick.values())
    return dataclasses.replace(recipe, groups={
        recipe.controls: dataclasses.replace(recipe.groups[recipe.controls], count=0),
        **{name: dataclasses.replace(group, count=max(1, round(patients * group.count / total)))
           for name, group in sick.items()}})


def variance_fraction(moments: np.ndarray, n: int) -> float:
    """f from the sums [4, V] of d, d², x and x² over n patients (d = x − its twin, V voxels):
    Σ_v Var_i[d] / Σ_v Var_i[x]."""
    var_d, var_x = moments[[1, 3]] / n - (moments[[0, 2]] / n) ** 2
    return float(var_d.sum() / var_x.sum())


def disease_fraction(recipe: Recipe) -> float:
    """f of every subject of `recipe` against its healthy twin, within the brain mask."""
    renderer = Renderer(recipe)
    brain = renderer.truth_maps()["brain_mask"] > 0
    sums = np.zeros((4, int(brain.sum())))
    subjects = plan_cohort(recipe)
    for _, subject in subjects.iterrows():
        x = renderer.render(subject)[brain].astype(np.float64)
        d = x - renderer.render(subject, diseased=False)[brain]
        sums += np.stack([d, d * d, x, x * x])
    return variance_fraction(sums, len(subjects))


def calibrate(recipe: Recipe, f: float, *, tolerance: float = 0.05,
              patients: int = 40) -> tuple[Recipe, float]:
    """The recipe with its pattern amplitudes scaled so that the pilot's f is within
    `tolerance` (relative) of `f`, and the f reached. `InputError` when `f` is beyond reach."""
    if not 0 < f < 1:
        raise InputError(f"disease_strength.f={f}: expected a fraction in (0, 1), e.g. 0.01")
    trial = pilot(recipe, patients)
    high = largest_factor(recipe)
    reachable = disease_fraction(scaled(trial, high))
    if reachable < f * (1 - tolerance):
        raise InputError(f"disease_strength.f={f}: the patterns reach at most f = "
                         f"{reachable:.4f} (an intensity loss of at most {MAX_INTENSITY} and a "
                         "fold-free warp at the highest severity); ask for less, or widen the "
                         "patterns (sigma_mm)")
    low, reached, factor = 0.0, reachable, high
    for _ in range(MAX_STEPS):
        if abs(reached - f) <= tolerance * f:
            break
        factor = (low + high) / 2
        reached = disease_fraction(scaled(trial, factor))
        low, high = (factor, high) if reached < f else (low, factor)
    log.info("disease strength: patterns scaled by %.3f, f = %.4f on a pilot of %d patients "
             "(asked %.4f)", factor, reached, sum(trial.counts.values()), f)
    return scaled(recipe, factor), reached


def recipe_from_config(config: dict) -> Recipe:
    """The recipe of a `neurocvae-synth` configuration (conf/synth.yaml, resolved), its patterns
    calibrated when `disease_strength.f` asks for a strength."""
    recipe = Recipe.from_dict(config)
    strength = config.get("disease_strength") or {}
    if strength.get("f") is not None:
        recipe, _ = calibrate(recipe, strength["f"], tolerance=strength["tolerance"],
                              patients=strength["pilot_patients"])
    return recipe
