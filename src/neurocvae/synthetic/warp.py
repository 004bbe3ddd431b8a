"""Fast analytic pull-back warps (docs/science.md §8): displacements summed, resampled once."""

from __future__ import annotations

import numpy as np

SUPPORT_SIGMAS = 3.0  # bumps are tapered to exactly zero at this many σ
_EDGE = np.exp(-(SUPPORT_SIGMAS**2) / 2)


def bump_weight(points_mm: np.ndarray, centre_mm, sigma_mm: float) -> np.ndarray:
    """Gaussian weight in [0, 1] of each point [..., 3], tapered to 0 at 3σ: float32 [...].

    g = (exp(−r²/2σ²) − e^{−4.5}) / (1 − e^{−4.5}) inside r < 3σ, else 0, so an effect built on
    g changes nothing outside its support.
    """
    offset = points_mm - np.asarray(centre_mm, dtype=np.float32)
    r2 = np.einsum("...i,...i->...", offset, offset) / np.float32(sigma_mm**2)
    weight = np.zeros(r2.shape, dtype=np.float32)
    inside = r2 < SUPPORT_SIGMAS**2
    weight[inside] = (np.exp(-r2[inside] / 2) - _EDGE) / (1 - _EDGE)
    return weight


def bump_displacement(points_mm: np.ndarray, centre_mm, sigma_mm: float,
                      amplitude: float) -> np.ndarray:
    """Radial pull-back displacement a·g(p)·(p − L) of points [..., 3]: float32 [..., 3] in mm.

    a > 0 samples farther from L, so tissue there shrinks (atrophy); a < 0 expands it; the local
    volume change at the centre is about (1 + a)^−3. Fold-free for −1 < a < 2.24.
    """
    offset = points_mm - np.asarray(centre_mm, dtype=np.float32)
    weight = bump_weight(points_mm, centre_mm, sigma_mm)
    return np.float32(amplitude) * weight[..., None] * offset


def scale_displacement(points_mm: np.ndarray, centre_mm, scale: float) -> np.ndarray:
    """Pull-back displacement of a global scaling by `scale` about a centre: float32 [..., 3]."""
    centre = np.asarray(centre_mm, dtype=np.float32)
    return (points_mm - centre) * np.float32(1 / scale - 1)


def weight_at(sigmas: float) -> float:
    """`bump_weight` at a distance of `sigmas` σ from the centre."""
    if sigmas >= SUPPORT_SIGMAS:
        return 0.0
    return float((np.exp(-(sigmas**2) / 2) - _EDGE) / (1 - _EDGE))


CORE_WEIGHT = weight_at(2.0)  # a pattern's planted region: within 2σ of its centre


ANATOMY_FREQUENCIES = 3  # cosine orders 0, 1, 2 per axis: 26 modes per displacement component


def anatomy_displacement(shape: tuple[int, int, int], rng: np.random.Generator,
                         rms_mm: float) -> np.ndarray:
    """A subject's own smooth anatomy: a random displacement of the grid, float32 [X, Y, Z, 3]
    in mm, with root-mean-square length `rms_mm` over the grid.

    Each component is Σ c·cos(πi·u)·cos(πj·v)·cos(πk·w) over the low-frequency modes
    (i, j, k) ∈ {0, 1, 2}³ except (0, 0, 0) (u, v, w ∈ [0, 1] along each axis), c ~ N(0, 1): a
    shape variance of a few dozen modes per axis, independent of age, disease and head size.
    """
    bases = [np.cos(np.pi * np.arange(ANATOMY_FREQUENCIES)[:, None]
                    * np.linspace(0, 1, n)[None, :]) for n in shape]
    field = np.empty((*shape, 3), dtype=np.float32)
    for component in range(3):
        weights = rng.standard_normal((ANATOMY_FREQUENCIES,) * 3)
        weights[0, 0, 0] = 0.0  # no translation
        field[..., component] = np.einsum("ijk,ix,jy,kz->xyz", weights, *bases)
    rms = np.sqrt(np.mean(np.sum(field**2, axis=-1)))
    return field * np.float32(rms_mm / rms)


def intensity_texture(shape: tuple[int, int, int], rng: np.random.Generator, sigma_voxels: float
                      ) -> np.ndarray:
    """A subject's own intensity texture: white noise smoothed by a Gaussian of `sigma_voxels`,
    scaled to unit SD over the grid, float32 [X, Y, Z] (the image is multiplied by
    1 + texture·field)."""
    from scipy.ndimage import gaussian_filter

    field = gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma_voxels,
                            mode="wrap")
    return (field / field.std()).astype(np.float32)
