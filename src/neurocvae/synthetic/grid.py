"""Isotropic RAS voxel grids in MNI space (mm)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Grid:
    """An isotropic RAS voxel grid.

    Args:
        voxel_size: edge of a voxel in mm.
        shape: voxels along x (R), y (A), z (S).
        centre_mm: MNI coordinate (mm) of the grid's centre.
        name: a label for reports and file names.
    """

    voxel_size: float
    shape: tuple[int, int, int]
    centre_mm: tuple[float, float, float]
    name: str = "grid"

    @property
    def affine(self) -> np.ndarray:
        """4×4 voxel → MNI mm affine (RAS, no rotation)."""
        affine = np.diag([self.voxel_size] * 3 + [1.0])
        half_extent = (np.asarray(self.shape) - 1) / 2 * self.voxel_size
        affine[:3, 3] = np.asarray(self.centre_mm) - half_extent
        return affine

    @property
    def n_voxels(self) -> int:
        return int(np.prod(self.shape))

    def points_mm(self) -> np.ndarray:
        """MNI coordinates of every voxel centre: float32 [X, Y, Z, 3] in mm."""
        axes = [np.arange(n, dtype=np.float32) for n in self.shape]
        ijk = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
        return ijk * np.float32(self.voxel_size) + self.affine[:3, 3].astype(np.float32)

    def box(self, centre_mm, radius_mm: float) -> tuple[slice, slice, slice]:
        """Index slices of the voxels within `radius_mm` of a point along each axis."""
        lo = self.to_voxel(np.asarray(centre_mm) - radius_mm)
        hi = self.to_voxel(np.asarray(centre_mm) + radius_mm)
        return tuple(slice(max(a, 0), max(b + 1, 0)) for a, b in zip(lo, hi, strict=True))

    def to_voxel(self, point_mm: tuple[float, float, float]) -> tuple[int, int, int]:
        """Nearest voxel index of an MNI point (may lie outside the grid)."""
        ijk = (np.asarray(point_mm) - self.affine[:3, 3]) / self.voxel_size
        return tuple(int(v) for v in np.rint(ijk))

    def contains(self, point_mm: tuple[float, float, float]) -> bool:
        return all(0 <= i < n for i, n in zip(self.to_voxel(point_mm), self.shape, strict=True))
