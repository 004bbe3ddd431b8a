"""Linear bias correction: recovers known coefficients, decorrelates the gap, refuses bad fits."""

import numpy as np
import pytest

from neurocvae.brainage.correction import BiasCorrection, agreement
from neurocvae.errors import InputError


@pytest.fixture
def controls():
    rng = np.random.default_rng(0)
    age = rng.uniform(45, 80, 2000)
    predicted = 0.71 * age + 14.06 + rng.normal(0, 2, age.size)
    return predicted, age


def test_scaling_recovers_known_coefficients_and_decorrelates_the_gap(controls):
    predicted, age = controls
    lbc = BiasCorrection.fit(predicted, age, form="scaling")
    assert lbc.a == pytest.approx(0.71, abs=0.01)
    assert lbc.b == pytest.approx(14.06, abs=0.6)
    assert np.corrcoef(predicted - age, age)[0, 1] < -0.8
    assert abs(np.corrcoef(lbc.gap(predicted, age), age)[0, 1]) < 1e-9
    assert lbc.corrected_age(np.array([lbc.a * 60 + lbc.b]), np.array([0.0])) == \
        pytest.approx(60)


def test_offset_form_and_its_relation_to_scaling(controls):
    predicted, age = controls
    scaling = BiasCorrection.fit(predicted, age, form="scaling")
    offset = BiasCorrection.fit(predicted, age, form="offset")
    assert offset.a == pytest.approx(scaling.a - 1)
    assert offset.b == pytest.approx(scaling.b)
    assert abs(np.corrcoef(offset.gap(predicted, age), age)[0, 1]) < 1e-9
    assert np.allclose(scaling.gap(predicted, age), offset.gap(predicted, age) / scaling.a)


def test_saved_with_its_form_and_loaded_back(controls, tmp_path):
    lbc = BiasCorrection.fit(*controls, form="offset", fitted_on="HC of 'val'")
    lbc.save(tmp_path / "lbc.json")
    assert BiasCorrection.load(tmp_path / "lbc.json") == lbc


def test_too_few_controls_is_a_clear_error(controls):
    predicted, age = controls
    with pytest.raises(InputError, match="at least 10 healthy controls to fit on \\(HC of 'val'"
                                         "\\); found 4"):
        BiasCorrection.fit(predicted[:4], age[:4], fitted_on="HC of 'val'")


def test_degenerate_fits_are_refused(controls):
    predicted, age = controls
    with pytest.raises(InputError, match="a range of ages"):
        BiasCorrection.fit(predicted[:20], np.full(20, 60.0))
    for form in ("scaling", "offset"):  # a constant prediction, refused by both forms
        with pytest.raises(InputError, match=r"slope 0\.000, correction\.min_slope 0\.05.*has "
                                             r"not learnt age"):
            BiasCorrection.fit(np.full(age.size, 62.0), age, form=form)
    weak = 0.03 * age + 60
    with pytest.raises(InputError, match="has not learnt age"):
        BiasCorrection.fit(weak, age, form="offset")
    assert BiasCorrection.fit(weak, age, form="offset", min_slope=0.01).a == pytest.approx(-0.97)
    with pytest.raises(InputError, match="has not learnt age"):  # scaling never divides by ≤ 0
        BiasCorrection.fit(62 - 0.1 * age, age, form="scaling", min_slope=-1)
    with pytest.raises(InputError, match="form 'ratio'"):
        BiasCorrection.fit(predicted, age, form="ratio")


def test_agreement_measures():
    age = np.array([50.0, 60.0, 70.0, 80.0])
    predicted = age + np.array([1.0, -1.0, 1.0, -1.0])
    result = agreement(predicted, age)
    assert result["mae"] == 1.0 and result["mean_error"] == 0.0 and result["n"] == 4
    assert result["r"] == pytest.approx(np.corrcoef(predicted, age)[0, 1])
