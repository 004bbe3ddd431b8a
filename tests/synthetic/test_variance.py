"""Each nuisance factor's share of the healthy scans' voxel variance."""

import pytest

from neurocvae.synthetic.variance import FACTORS, variance_shares
from tests.conftest import counts, synth_recipe

SMALL = counts(HC=12, MDD=0, diabetes=0, dual=0)


def shares(*overrides: str) -> dict[str, float]:
    """The shares of a small cohort (4 mm unless a grid is given)."""
    recipe = synth_recipe(*SMALL, *overrides)
    return variance_shares(recipe)


def test_native_head_size_carries_most_of_the_variance_and_registration_removes_it():
    native = shares("head_size.space=native", "anatomy.rms_mm=0", "anatomy.texture=0")
    assert set(native) == set(FACTORS)
    assert native["head size"] > 0.5 and native["individual anatomy"] == 0
    assert native["intensity texture"] == 0
    registered = shares("head_size.space=registered", "anatomy.rms_mm=2", "anatomy.texture=0.05")
    assert registered["head size"] < 0.1 < registered["individual anatomy"]
    assert registered["site"] > 0.1 and 0 < registered["ageing"] < 0.5
    assert 0.01 < registered["intensity texture"] < 0.5


def test_a_factor_that_is_not_planted_has_no_share():
    assert shares("shared_warp.amplitude=0")["shared warp"] == 0


def test_a_fine_grid_is_measured_at_4_mm():
    assert shares("grid=default") == pytest.approx(shares("grid=ci"), abs=1e-6)  # 2 mm → 4 mm
