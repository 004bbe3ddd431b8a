"""Age bins of SFCN: Gaussian soft labels, the loss, and the expected age (docs/science.md §2.2)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch


class AgeRangeWarning(UserWarning):
    """Ages outside the bins: their labels lose mass and predictions cannot reach them."""


@dataclass(frozen=True)
class AgeBins:
    """`count` bins of `width` years from `start` (default [42, 82) in 40 one-year bins).

    Keep the default for the published weights: their 40 outputs are these bins.
    """

    start: float = 42.0
    stop: float = 82.0
    width: float = 1.0
    sigma: float = 1.0  # years; 0 gives hard labels (the bin holding the age)

    def __post_init__(self) -> None:
        if self.stop <= self.start or self.width <= 0 or self.sigma < 0:
            raise ValueError(f"invalid age bins {self}")
        count = (self.stop - self.start) / self.width
        if abs(count - round(count)) > 1e-9:
            raise ValueError(f"bins of width {self.width} do not tile [{self.start}, {self.stop})")

    @property
    def count(self) -> int:
        return round((self.stop - self.start) / self.width)

    def centres(self, device: torch.device | None = None) -> torch.Tensor:
        """[K] bin centres in years."""
        return self.start + self.width * (torch.arange(self.count, device=device) + 0.5)

    def soft_labels(self, age: torch.Tensor) -> torch.Tensor:
        """[B] ages (years) → [B, K] Gaussian mass per bin, not renormalised.

        v_k = Φ((c_k + w/2 − y)/σ) − Φ((c_k − w/2 − y)/σ); ages near the ends lose mass.
        """
        age = age.double()[:, None]
        lower = self.start + self.width * torch.arange(self.count, device=age.device,
                                                       dtype=torch.float64)
        if self.sigma == 0:
            return ((age >= lower) & (age < lower + self.width)).float()
        cdf = torch.special.ndtr
        mass = cdf((lower + self.width - age) / self.sigma) - cdf((lower - age) / self.sigma)
        return mass.float()

    def expected_age(self, log_probs: torch.Tensor) -> torch.Tensor:
        """[B, K] log-probabilities → [B] expected bin centre (years)."""
        return log_probs.exp() @ self.centres(log_probs.device).to(log_probs.dtype)

    def check(self, age: np.ndarray | torch.Tensor, what: str = "subjects") -> int:
        """Warn (`AgeRangeWarning`) with the count of ages outside [start, stop); return it."""
        age = np.asarray(age, dtype=float)
        outside = int(((age < self.start) | (age >= self.stop)).sum())
        if outside:
            warnings.warn(f"{outside} of {age.size} {what} have ages outside the SFCN bins "
                          f"[{self.start:g}, {self.stop:g}) (ages {age.min():g}–{age.max():g}): "
                          "their labels lose mass and predictions cannot reach them; widen "
                          "the bins (not possible with the published weights)",
                          AgeRangeWarning, stacklevel=2)
        return outside


def kl_loss(log_probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """KL(labels ‖ p) summed over bins, averaged over the batch; labels are not modified.

    Zero-mass bins contribute nothing (0·log 0 = 0).
    """
    positive = labels > 0
    log_labels = torch.where(positive, labels, 1.0).log()
    terms = torch.where(positive, labels * (log_labels - log_probs), 0.0)
    return terms.sum() / log_probs.shape[0]

