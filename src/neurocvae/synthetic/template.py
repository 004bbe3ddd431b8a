"""The MNI152 template (T1, grey matter, brain mask) that ships inside nilearn: no download."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import nibabel as nib
import numpy as np
from scipy import ndimage

_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
}
BRAIN_THRESHOLD = 0.2  # nilearn's load_mni152_brain_mask: T1 > 0.2


def template_path(kind: str) -> str:
    """Path of a 1 mm MNI152 file inside the installed nilearn (`kind`: "t1" or "gm")."""
    return str(resources.files("nilearn") / "datasets" / "data" / _FILES[kind])


@dataclass
class Template:
    """MNI152 maps in [0, 1] on nilearn's 1 mm RAS grid (197×233×189), optionally blurred.

    `sample(points_mm)` interpolates them (trilinear) at arbitrary MNI points; blurring with a
    Gaussian of FWHM ≈ the target voxel size avoids aliasing when sampling a coarser grid.
    """

    t1: np.ndarray
    gm: np.ndarray
    affine: np.ndarray

    @classmethod
    def load(cls, voxel_size: float = 1.0) -> Template:
        """Load the template, blurred for sampling on a grid of `voxel_size` mm."""
        t1_img = nib.load(template_path("t1"))
        t1 = np.asarray(t1_img.dataobj, dtype=np.float32) / 255.0
        gm = np.asarray(nib.load(template_path("gm")).dataobj, dtype=np.float32) / 255.0
        sigma_vox = np.sqrt(max(voxel_size**2 - 1.0, 0.0)) / 2.3548  # template voxels are 1 mm
        if sigma_vox > 0:
            t1, gm = (ndimage.gaussian_filter(a, sigma_vox) for a in (t1, gm))
        return cls(t1=t1, gm=gm, affine=t1_img.affine)

    def sample(self, points_mm: np.ndarray) -> dict[str, np.ndarray]:
        """Trilinear values at `points_mm` [..., 3] → {"t1", "gm"}, each float32 [...]."""
        inverse = np.linalg.inv(self.affine).astype(np.float32)
        index = np.moveaxis(points_mm @ inverse[:3, :3].T + inverse[:3, 3], -1, 0)
        return {
            name: ndimage.map_coordinates(volume, index, order=1, mode="constant", cval=0.0,
                                          prefilter=False)
            for name, volume in (("t1", self.t1), ("gm", self.gm))
        }

    def in_brain(self, point_mm: tuple[float, float, float]) -> bool:
        """Whether an MNI point falls inside the template's brain mask (T1 > 0.2, as nilearn)."""
        t1 = self.sample(np.asarray([point_mm], dtype=np.float32))["t1"][0]
        return bool(t1 > BRAIN_THRESHOLD)
