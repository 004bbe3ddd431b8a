"""Shared fixtures: configs composed with Hydra's compose API, one small synthetic cohort."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from neurocvae.config import compose_config
from neurocvae.synthetic.recipe import Recipe
from neurocvae.synthetic.renderer import generate_cohort


def counts(**groups: int) -> list[str]:
    """neurocvae-synth overrides giving each named group its count: counts(HC=3, MDD=2)."""
    return [f"groups.{name}.count={n}" for name, n in groups.items()]


def synth_recipe(*overrides: str) -> Recipe:
    cfg = compose_config("synth", ["grid=ci", *overrides])
    return Recipe.from_dict(OmegaConf.to_container(cfg, resolve=True))


@pytest.fixture(scope="session")
def ci_cohort(tmp_path_factory) -> Path:
    """The default recipe on the 4 mm grid: HC 240, MDD/diabetes/dual 80 each, with twins."""
    out = tmp_path_factory.mktemp("cohort") / "ci"
    return generate_cohort(synth_recipe(), out, workers=2)
