"""Weight schedules for β and γ, counted in training batches (docs/science.md §4.3).

A schedule maps `(batch, batches_per_epoch, total_batches)` to a weight. The module passes its
own batch counter (saved in checkpoints), so a resumed run continues where it stopped;
`trainer.global_step` would count two optimiser steps per batch. `unit="epoch"` evaluates the
schedule at whole epochs (batch // batches_per_epoch) instead of at every batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

UNITS = ("step", "epoch")


@dataclass(frozen=True)
class Schedule:
    value: float = 1.0
    unit: str = "step"

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"unit={self.unit!r}: expected one of {UNITS}")

    def __call__(self, batch: int, batches_per_epoch: int, total_batches: int) -> float:
        """The weight at the 0-based `batch` of a run of `total_batches`."""
        if self.unit == "epoch":
            per_epoch = max(batches_per_epoch, 1)
            return self.at(batch // per_epoch, max(math.ceil(total_batches / per_epoch), 1))
        return self.at(batch, max(total_batches, 1))

    def at(self, t: int, total: int) -> float:
        """The weight at 0-based time `t` (in `unit`s) of `total`."""
        raise NotImplementedError


@dataclass(frozen=True)
class Constant(Schedule):
    def at(self, t: int, total: int) -> float:
        return self.value


@dataclass(frozen=True)
class WarmUp(Schedule):
    """Linear from 0 to `value` over the first `length` units, then `value` (monotonic
    annealing)."""

    length: int = 1000

    def at(self, t: int, total: int) -> float:
        return self.value * min(1.0, t / self.length) if self.length > 0 else self.value


@dataclass(frozen=True)
class Cyclical(Schedule):
    """Fu et al. 2019: `cycles` cycles over the run; in each, linear from 0 to `value` over the
    first `ratio` of the cycle, then `value`. τ_t = mod(t, ⌈T/M⌉)/(T/M)."""

    cycles: int = 4
    ratio: float = 0.5

    def at(self, t: int, total: int) -> float:
        tau = (t % math.ceil(total / self.cycles)) / (total / self.cycles)
        return self.value * tau / self.ratio if tau <= self.ratio else self.value


@dataclass(frozen=True)
class OriginalCyclical(Schedule):
    """The original M3 schedule, per epoch e: `value` for e < `flat`; then with
    m = (e − flat) mod `cycle`: 2·value·m/cycle for m < cycle/2, else `value` (open-ended)."""

    cycle: int = 20
    flat: int = 4
    unit: str = "epoch"

    def at(self, t: int, total: int) -> float:
        if t < self.flat:
            return self.value
        m = (t - self.flat) % self.cycle
        return 2 * self.value * m / self.cycle if m < self.cycle / 2 else self.value


SeedCyclical = OriginalCyclical  # the former name, in configs saved with older checkpoints
