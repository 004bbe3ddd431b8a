"""Training-only random transforms, applied after the cache, seeded per item.

Every random draw comes from the item's own seed (set by the sampler), so an augmented epoch is
the same for any number of dataloader workers and after a resume.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from monai.transforms import Compose, MapTransform, RandBiasFieldd, RandFlipd, Randomizable

from neurocvae.errors import InputError


class RandShiftd(Randomizable, MapTransform):
    """Shift by a random whole number of voxels in [−max_shift, max_shift] per axis, zero-filled.

    A cheap stand-in for a translation (no interpolation), as in SFCN's training.
    """

    def __init__(self, keys: str, max_shift: int) -> None:
        MapTransform.__init__(self, keys)
        self.max_shift = max_shift
        self.shift = (0, 0, 0)

    def randomize(self, data: Any = None) -> None:
        self.shift = tuple(int(s) for s in
                           self.R.randint(-self.max_shift, self.max_shift + 1, size=3))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        self.randomize()
        out = dict(data)
        for key in self.key_iterator(out):
            out[key] = shift_volume(out[key], self.shift)
        return out


def shift_volume(image: torch.Tensor, shift: tuple[int, int, int]) -> torch.Tensor:
    """`image` [C, X, Y, Z] moved by `shift` voxels; what moves in from outside is zero."""
    out = torch.zeros_like(image)
    source, target = [slice(None)], [slice(None)]
    for s in shift:
        source.append(slice(max(-s, 0), image.shape[len(source)] - max(s, 0)))
        target.append(slice(max(s, 0), image.shape[len(target)] - max(-s, 0)))
    out[tuple(target)] = image[tuple(source)]
    return out


@dataclass(frozen=True)
class Augmentation:
    """flip_prob: left-right mirror (RAS axis 0); max_shift: voxels per axis; bias field:
    a smooth multiplicative field (MONAI, degree 3) with coefficients up to `bias_field_coeff`."""

    flip_prob: float = 0.0
    max_shift: int = 0
    bias_field_prob: float = 0.0
    bias_field_coeff: float = 0.1

    def __post_init__(self) -> None:
        for name in ("flip_prob", "bias_field_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise InputError(f"augmentation.{name}={getattr(self, name)}: expected 0…1")
        if self.max_shift < 0:
            raise InputError(f"augmentation.max_shift={self.max_shift}: expected ≥ 0 voxels")

    def transform(self) -> Compose | None:
        """The random transforms on `{"image": [1, X, Y, Z]}`, or None when all are off."""
        steps: list[Any] = []
        if self.flip_prob:
            steps.append(RandFlipd("image", prob=self.flip_prob, spatial_axis=0))
        if self.max_shift:
            steps.append(RandShiftd("image", self.max_shift))
        if self.bias_field_prob:
            steps.append(RandBiasFieldd("image", prob=self.bias_field_prob,
                                        coeff_range=(0.0, self.bias_field_coeff)))
        return Compose(steps) if steps else None
