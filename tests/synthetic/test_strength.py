"""A disease strength asked for: the pattern amplitudes are scaled until the pilot's disease
variance fraction f reaches the request; an impossible request is refused with the reachable f."""

import json

import pytest
from omegaconf import OmegaConf

from neurocvae.cli.synth import synth
from neurocvae.errors import InputError
from neurocvae.evaluation.benchmark import make_cohort
from neurocvae.synthetic.strength import (
    MAX_INTENSITY,
    calibrate,
    disease_fraction,
    largest_factor,
    pilot,
    scaled,
)
from tests.conftest import compose_config, counts, synth_recipe

PILOT = 12


@pytest.fixture(scope="module")
def recipe():
    return synth_recipe()


@pytest.mark.parametrize("grid", ["ci", pytest.param("mm3", marks=pytest.mark.slow)])
def test_the_request_is_reached_and_the_patterns_keep_their_proportions(grid):
    recipe = synth_recipe(f"grid={grid}")
    weaker, reached = calibrate(recipe, 0.002, patients=PILOT)
    assert reached == pytest.approx(0.002, rel=0.05)
    assert disease_fraction(pilot(weaker, PILOT)) == pytest.approx(reached, rel=1e-6)
    factor = weaker.patterns["A"].intensity / recipe.patterns["A"].intensity
    for name, pattern in recipe.patterns.items():  # one factor, no bound reached
        assert weaker.patterns[name].intensity == pytest.approx(pattern.intensity * factor)
        assert weaker.patterns[name].warp == pytest.approx(pattern.warp * factor)
        assert weaker.patterns[name].centre_mm == pattern.centre_mm


def test_amplitudes_stop_at_their_bounds(recipe):
    strongest = scaled(recipe, largest_factor(recipe) * 10)
    top = recipe.severity_range[1]
    for pattern in strongest.patterns.values():
        assert pattern.intensity * top == pytest.approx(MAX_INTENSITY)
        strongest.validate()  # still a valid, fold-free recipe


@pytest.mark.parametrize(("f", "message"), [
    (0.5, r"the patterns reach at most f = 0\.0\d\d\d"),
    (0, r"expected a fraction in \(0, 1\)"),
])
def test_an_impossible_request_is_refused_with_what_is_reachable(recipe, f, message):
    with pytest.raises(InputError, match=message):
        calibrate(recipe, f, patients=PILOT)


def test_the_command_and_the_benchmark_render_the_calibrated_cohort(tmp_path):
    recipe = ["grid=ci", *counts(HC=4, MDD=4, diabetes=4, dual=4), "disease_strength.f=0.002",
              f"disease_strength.pilot_patients={PILOT}"]
    out = tmp_path / "cohort"
    synth(compose_config("synth", [*recipe, f"out_dir={out}", "workers=1", "report=false"]))
    saved = json.loads((out / "recipe.json").read_text())
    assert saved["recipe"]["patterns"]["A"]["intensity"] < 0.4  # scaled down from 0.4
    make_cohort(OmegaConf.create({"cohort": recipe}), tmp_path / "benchmark")
    assert json.loads((tmp_path / "benchmark" / "recipe.json").read_text()) == saved
