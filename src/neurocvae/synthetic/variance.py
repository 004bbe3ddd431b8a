"""How much of the healthy scans' voxel variance each planted nuisance factor carries.

A sample of the controls is rendered as planted, then again with one factor held fixed at its
neutral value (head scale 1, no anatomy of their own, effective age t = 0, no shared warp, an
ideal scanner). A factor's share is the within-brain voxel variance across subjects that holding
it fixed removes: 1 − Σ_v Var_i[x_i without it] / Σ_v Var_i[x_i]. Factors interact (a warp moves
what ageing changed), so the shares need not add up to the whole.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pandas as pd

from neurocvae.synthetic.recipe import Recipe, Site
from neurocvae.synthetic.renderer import Renderer

SAMPLE = 24  # controls rendered per factor


def _ideal_scanners(recipe: Recipe) -> Recipe:
    return dataclasses.replace(recipe, sites=tuple(Site(s.name, 1.0, 0.0, 0.0)
                                                   for s in recipe.sites))


def _own_anatomy_off(recipe: Recipe) -> Recipe:
    return dataclasses.replace(recipe, anatomy_rms_mm=0.0)


def _same(recipe: Recipe) -> Recipe:
    return recipe


# factor → (the recipe it is rendered with, the subject's values held fixed)
FACTORS: dict[str, tuple[Callable[[Recipe], Recipe], dict[str, float]]] = {
    "head size": (_same, {"head_scale": 1.0}),
    "individual anatomy": (_own_anatomy_off, {}),
    "ageing": (_same, {"t": 0.0, "ventricle_scale": 1.0}),
    "shared warp": (_same, {"u_warp": 0.0}),
    "site": (_ideal_scanners, {}),
}


def _with(subject: pd.Series, values: dict[str, float]) -> pd.Series:
    changed = subject.copy()
    for key, value in values.items():
        changed[key] = value
    return changed


def variance_shares(recipe: Recipe, plan: pd.DataFrame, *, sample: int = SAMPLE
                    ) -> dict[str, float]:
    """Each factor's share of the controls' within-brain voxel variance (`plan`: the cohort's
    planted factors, `plan_cohort`); the first `sample` controls of the plan (its order is
    random) are rendered. Factors the recipe does not plant (e.g. no anatomy) get 0."""
    controls = plan[plan["group"] == recipe.controls].head(sample)
    if len(controls) < 2:
        return {}
    renderer = Renderer(recipe)
    brain = renderer.truth_maps()["brain_mask"] > 0

    def spread(renderer: Renderer, fixed: dict[str, float]) -> float:
        volumes = np.stack([renderer.render(_with(subject, fixed))[brain]
                            for _, subject in controls.iterrows()])
        return float(volumes.astype(np.float64).var(0).sum())

    total = spread(renderer, {})
    return {factor: max(0.0, 1 - spread(renderer if variant is _same
                                        else Renderer(variant(recipe)), fixed) / total)
            for factor, (variant, fixed) in FACTORS.items()}
