"""How much of the healthy scans' voxel variance each planted nuisance factor carries.

A sample of the controls is rendered as planted, then again with one factor held fixed at its
neutral value (head scale 1, no anatomy of their own, effective age t = 0, no shared warp, an
ideal scanner). A factor's share is the within-brain voxel variance across subjects that holding
it fixed removes: 1 − Σ_v Var_i[x_i without it] / Σ_v Var_i[x_i]. Factors interact (a warp moves
what ageing changed), so the shares need not add up to the whole. A grid finer than 4 mm is
rendered at 4 mm over the same field of view: the shares are the recipe's, and a 1 mm cohort's
report would otherwise render for minutes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from neurocvae.synthetic.grid import Grid
from neurocvae.synthetic.recipe import Recipe, Site
from neurocvae.synthetic.renderer import Renderer, plan_cohort

SAMPLE = 24  # controls rendered per factor
VOXEL_MM = 4.0  # the finest grid they are rendered on


def coarse(grid: Grid) -> Grid:
    """`grid` at VOXEL_MM over the same field of view (itself when already as coarse)."""
    if grid.voxel_size >= VOXEL_MM:
        return grid
    shape = tuple(math.ceil(n * grid.voxel_size / VOXEL_MM) for n in grid.shape)
    return dataclasses.replace(grid, voxel_size=VOXEL_MM, shape=shape)


def _ideal_scanners(recipe: Recipe) -> Recipe:
    return dataclasses.replace(recipe, sites=tuple(Site(s.name, 1.0, 0.0, 0.0)
                                                   for s in recipe.sites))


def _own_anatomy_off(recipe: Recipe) -> Recipe:
    return dataclasses.replace(recipe, anatomy_rms_mm=0.0)


def _own_texture_off(recipe: Recipe) -> Recipe:
    return dataclasses.replace(recipe, texture=0.0)


# factor → (the change of recipe it is rendered with, None: none; the subject's values held fixed)
FACTORS: dict[str, tuple[Callable[[Recipe], Recipe] | None, dict[str, float]]] = {
    "head size": (None, {"head_scale": 1.0}),
    "individual anatomy": (_own_anatomy_off, {}),
    "intensity texture": (_own_texture_off, {}),
    "ageing": (None, {"t": 0.0, "ventricle_scale": 1.0}),
    "shared warp": (None, {"u_warp": 0.0}),
    "site": (_ideal_scanners, {}),
}


def _with(subject: pd.Series, values: dict[str, float]) -> pd.Series:
    changed = subject.copy()
    for key, value in values.items():
        changed[key] = value
    return changed


def variance_shares(recipe: Recipe, *, sample: int = SAMPLE) -> dict[str, float]:
    """Each factor's share of the controls' within-brain voxel variance; the first `sample`
    controls of the cohort's plan (`plan_cohort`, in random order) are rendered. Factors the
    recipe does not plant (e.g. no anatomy) get 0."""
    plan = plan_cohort(recipe)
    controls = plan[plan["group"] == recipe.controls].head(sample)
    if len(controls) < 2:
        return {}
    recipe = dataclasses.replace(recipe, grid=coarse(recipe.grid))
    renderer = Renderer(recipe)
    brain = renderer.truth_maps()["brain_mask"] > 0

    def spread(renderer: Renderer, fixed: dict[str, float]) -> float:
        volumes = np.stack([renderer.render(_with(subject, fixed))[brain]
                            for _, subject in controls.iterrows()])
        return float(volumes.astype(np.float64).var(0).sum())

    total = spread(renderer, {})
    return {factor: max(0.0, 1 - spread(Renderer(variant(recipe)) if variant else renderer,
                                        fixed) / total)
            for factor, (variant, fixed) in FACTORS.items()}
