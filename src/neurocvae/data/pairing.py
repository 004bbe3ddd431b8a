"""Which target goes with each background scan in a contrastive batch.

Each rule maps a random generator to `partner` [n_background]: the target index paired with
each background index for one epoch (drawn afresh every epoch).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Pairing = Callable[[np.random.Generator], np.ndarray]
PAIRINGS = ("random", "age_matched", "site_matched")


def random_pairing(n_background: int, n_target: int) -> Pairing:
    """Targets in a fresh random order, cycled: every target is used as evenly as possible."""
    return lambda rng: np.resize(rng.permutation(n_target), n_background)


def _choose(eligible: np.ndarray, fallback: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per row, a random eligible column; a row with none takes the lowest `fallback` (≥ 0)."""
    score = np.where(eligible, rng.random(eligible.shape), 1.0 + fallback)
    return score.argmin(axis=1)


def age_matched_pairing(background_age: np.ndarray, target_age: np.ndarray, *,
                        window: float = 1.0) -> Pairing:
    """A random target within `window` years of the background's age, else the nearest in age."""
    distance = np.abs(np.asarray(background_age)[:, None] - np.asarray(target_age)[None, :])
    return lambda rng: _choose(distance <= window, distance, rng)


def site_matched_pairing(background_site: np.ndarray, target_site: np.ndarray) -> Pairing:
    """A random target from the background's site, else a random target from any site."""
    same = np.asarray(background_site)[:, None] == np.asarray(target_site)[None, :]
    return lambda rng: _choose(same, rng.random(same.shape), rng)
