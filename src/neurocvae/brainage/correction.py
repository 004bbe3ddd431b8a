"""Linear bias correction of predicted age (docs/science.md §3), fitted on held-out controls.

Two published forms, both from an ordinary least-squares line on the calibration controls:

- `scaling` (Cole et al. 2018; Peng et al. 2021): fit ŷ = a·y + b; corrected age (ŷ − b)/a.
- `offset` (Beheshti et al. 2019; Smith et al. 2019): fit ŷ − y = a·y + b; corrected age
  ŷ − (a·y + b).

The brain-age gap (BAG) is corrected age − y. The scaling form divides gaps by its slope
(BAG_scaling = BAG_offset / (1 + a_offset)), so a BAG threshold only means something together
with the form: it is saved with the coefficients.

Both forms refuse a model that has not learnt age by the same rule: the slope of predicted on
true age over the calibration controls must reach `min_slope` (the scaling slope; the offset
form's slope is that minus 1). Below it the scaling form would divide by almost nothing, and
the offset form would subtract the model's whole error and report a near-perfect result for a
model that predicts a constant.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from neurocvae.errors import InputError

FORMS = ("scaling", "offset")
MIN_SLOPE = 0.05  # years of predicted age per year of age


@dataclass(frozen=True)
class BiasCorrection:
    """A fitted correction: `form`, slope `a`, intercept `b` (years), fitted on `n` controls."""

    form: str
    a: float
    b: float
    n: int
    fitted_on: str = ""

    @classmethod
    def fit(cls, predicted: np.ndarray, age: np.ndarray, *, form: str = "scaling",
            min_subjects: int = 10, min_slope: float = MIN_SLOPE,
            fitted_on: str = "") -> BiasCorrection:
        """OLS fit on calibration controls: `predicted` and true `age` in years, [N] each;
        refused when predicted age rises by less than `min_slope` per year of age."""
        if form not in FORMS:
            raise InputError(f"correction form {form!r}: expected one of {FORMS}")
        predicted, age = np.asarray(predicted, float), np.asarray(age, float)
        where = f" ({fitted_on})" if fitted_on else ""
        require_controls(len(age), min_subjects, fitted_on)
        if np.ptp(age) == 0:
            raise InputError(f"the bias correction needs a range of ages{where}; every control "
                             f"is {age[0]:g}")
        a, b = np.polyfit(age, predicted, 1)
        if not a >= min_slope or (a <= 0 and form == "scaling"):
            raise InputError(f"predicted age hardly rises with age on the calibration controls"
                             f"{where} (slope {a:.3f}, correction.min_slope {min_slope:g}): the "
                             "model has not learnt age, and a bias correction would hide that. "
                             "Train longer or check the weights")
        if form == "offset":
            a -= 1.0
        return cls(form=form, a=float(a), b=float(b), n=len(age), fitted_on=fitted_on)

    def corrected_age(self, predicted: np.ndarray, age: np.ndarray) -> np.ndarray:
        """[N] corrected age in years (the offset form needs the true age, as does the gap)."""
        predicted, age = np.asarray(predicted, float), np.asarray(age, float)
        if self.form == "scaling":
            return (predicted - self.b) / self.a
        return predicted - (self.a * age + self.b)

    def gap(self, predicted: np.ndarray, age: np.ndarray) -> np.ndarray:
        """[N] brain-age gap in years: corrected age − age."""
        return self.corrected_age(predicted, age) - np.asarray(age, float)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> BiasCorrection:
        return cls(**json.loads(Path(path).read_text()))


def require_controls(n: int, min_subjects: int, fitted_on: str = "") -> None:
    """Refuse to fit on fewer than `min_subjects` controls (checked again before training)."""
    if n < min_subjects:
        where = f" ({fitted_on})" if fitted_on else ""
        raise InputError(f"the bias correction needs at least {min_subjects} healthy controls "
                         f"to fit on{where}; found {n}. Add controls, or change "
                         "correction.fit_on or data.split_fractions")


def agreement(predicted: np.ndarray, age: np.ndarray) -> dict[str, float]:
    """How predictions (years) agree with age: n, MAE, mean error, r, corr(error, age)."""
    predicted, age = np.asarray(predicted, float), np.asarray(age, float)
    error = predicted - age
    varied = len(age) > 2 and np.ptp(age) > 0
    return {"n": len(age), "mae": float(np.abs(error).mean()), "mean_error": float(error.mean()),
            "r": float(np.corrcoef(predicted, age)[0, 1]) if varied else float("nan"),
            "r_error_age": float(np.corrcoef(error, age)[0, 1]) if varied else float("nan")}
