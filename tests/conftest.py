"""Shared fixtures: configs composed with Hydra's compose API, one small synthetic cohort."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from neurocvae.config import config_dir
from neurocvae.data.recipe import Recipe
from neurocvae.data.synthetic import generate_cohort


def compose_config(name: str, overrides: list[str] | None = None) -> DictConfig:
    """Compose `conf/<name>.yaml` exactly as the installed command would."""
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose(name, overrides=overrides or [], return_hydra_config=False)


def synth_recipe(*overrides: str) -> Recipe:
    cfg = compose_config("synth", ["grid=ci", *overrides])
    return Recipe.from_dict(OmegaConf.to_container(cfg, resolve=True))


@pytest.fixture(scope="session")
def ci_cohort(tmp_path_factory) -> Path:
    """The default recipe on the 4 mm grid: HC 240, MDD/diabetes/dual 80 each, with twins."""
    out = tmp_path_factory.mktemp("cohort") / "ci"
    return generate_cohort(synth_recipe(), out, workers=2)
