"""Reading and preprocessing volumes: the deterministic part that the cache stores.

MONAI dictionary transforms on `{"image": path}`: load (with validation), channel first, RAS
orientation (UK Biobank files are FSL LAS, nilearn's are RAS), optional isotropic resampling,
intensity normalisation, centre crop/pad. Order as in SFCN: the volume is divided by its mean
over the *whole* field of view (zeros included) before the crop.
"""

from __future__ import annotations

import gzip
import zipfile
import zlib
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import (
    Compose,
    MapTransform,
    NormalizeIntensityd,
    Orientationd,
    ResizeWithPadOrCropd,
    Spacingd,
)

from neurocvae.data.archives import read_nifti
from neurocvae.errors import InputError

NORMALISATIONS = ("mean", "minmax_global", "zscore_brain")
CACHE_FORMAT = 2  # bump when the cached computation changes


class VolumeError(InputError):
    """A volume that cannot be used; the message names the path and the problem."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = str(path), problem


@dataclass(frozen=True)
class Preprocessing:
    """The deterministic preprocessing of every volume.

    voxel_size: isotropic resampling in mm (None keeps the source grid).
    shape: centre crop/pad to this many voxels (None keeps the resampled shape); SFCN uses
        160×192×160 at 1 mm.
    normalise: `mean` (SFCN: divide by the volume mean), `minmax_global` (`mean`, then the
        training split's percentile min/max, fitted later and stored with the run; the cache
        holds the `mean` volume) or `zscore_brain` (zero mean, unit SD over non-zero voxels).
    """

    voxel_size: float | None = None
    shape: tuple[int, int, int] | None = (160, 192, 160)
    normalise: str = "mean"

    def __post_init__(self) -> None:
        if self.normalise not in NORMALISATIONS:
            raise InputError(f"normalise={self.normalise!r}: expected one of {NORMALISATIONS}")
        if self.voxel_size is not None and self.voxel_size <= 0:
            raise InputError(f"voxel_size={self.voxel_size}: must be > 0 mm")
        if self.shape is not None:
            object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
            if len(self.shape) != 3 or min(self.shape) < 1:
                raise InputError(f"shape={self.shape}: expected three positive sizes")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Preprocessing:
        known = set(cls.__dataclass_fields__)
        unknown = set(values) - known
        if unknown:
            raise InputError(f"unknown preprocessing option(s) {sorted(unknown)}; "
                             f"known: {sorted(known)}")
        return cls(**values)

    @property
    def cached_normalise(self) -> str:
        """The normalisation the cache stores (`minmax_global` is applied when reading)."""
        return "mean" if self.normalise == "minmax_global" else self.normalise

    def as_dict(self) -> dict[str, Any]:
        """The settings as plain values (`from_dict` reads them back)."""
        return asdict(self) | {"shape": list(self.shape) if self.shape else None}

    def cache_settings(self) -> dict[str, Any]:
        """What determines the cached arrays: a change here rebuilds the cache."""
        return self.as_dict() | {"normalise": self.cached_normalise, "format": CACHE_FORMAT}

    def transform(self) -> Compose:
        """`{"image": path}` → `{"image": float32 MetaTensor [1, X, Y, Z]}`, RAS."""
        steps: list[Any] = [LoadVolumed("image"), Orientationd("image", axcodes="RAS", labels=None)]
        if self.voxel_size:
            steps.append(Spacingd("image", pixdim=(self.voxel_size,) * 3, mode="bilinear"))
        if self.cached_normalise == "mean":
            steps.append(DivideByMeand("image"))
        else:
            steps.append(NormalizeIntensityd("image", nonzero=True))
        if self.shape:
            steps.append(ResizeWithPadOrCropd("image", spatial_size=self.shape))
        return Compose(steps)

    def __call__(self, path: str | Path) -> torch.Tensor:
        """The preprocessed volume of one file, float32 [1, X, Y, Z] (no metadata)."""
        return preprocess(self.transform(), path).as_tensor()

    def affine(self, path: str | Path) -> np.ndarray:
        """[4, 4] the voxel-to-mm (RAS) affine of the file's preprocessed grid."""
        return np.asarray(preprocess(self.transform(), path).affine, dtype=float)


def preprocess(transform: Compose, path: str | Path) -> MetaTensor:
    """Apply `transform` to the file at `path`: a MetaTensor [1, X, Y, Z] that carries its
    affine. A `VolumeError` surfaces as itself (MONAI wraps errors raised inside a transform in
    a `RuntimeError`)."""
    try:
        return transform({"image": str(path)})["image"]
    except RuntimeError as error:
        cause: BaseException | None = error
        while cause is not None and not isinstance(cause, VolumeError):
            cause = cause.__cause__
        if cause is None:
            raise
        raise cause from None


MAX_PADDING = 0.75  # share of a crop that may be zero padding around the volume (4× the cost)


def check_crop(paths: Iterable[str], preprocessing: Preprocessing) -> None:
    """Refuse a crop (`preprocessing.shape`) that is mostly padding around the volumes: the
    network would spend most of its work on zeros. The grid is read from the header of the
    first readable volume, after the resampling asked for."""
    if preprocessing.shape is None:
        return
    for path in paths:
        try:
            header = read_nifti(path).header
        except Exception:  # unreadable: the cache names it with its problem
            continue
        grid = np.array(header.get_data_shape()[:3], dtype=float)
        if preprocessing.voxel_size:
            grid = np.round(grid * np.array(header.get_zooms()[:3]) / preprocessing.voxel_size)
        crop = np.array(preprocessing.shape, dtype=float)
        padding = 1 - np.prod(np.minimum(grid, crop)) / np.prod(crop)
        if padding > MAX_PADDING:
            fitted = [int(n) for n in grid]
            raise InputError(
                f"data.preprocessing.shape={list(preprocessing.shape)} is {padding:.0%} zero "
                f"padding around volumes of {'×'.join(map(str, fitted))} voxels ({path}), at "
                f"{np.prod(crop) / np.prod(np.minimum(grid, crop)):.0f}× the cost: set "
                f"data.preprocessing.shape={fitted} (or null to keep the volumes' grid)")
        return


def read_shape(path: str | Path) -> tuple[int, ...]:
    """The array shape from the header only (cheap: no decompression of the data)."""
    try:
        return tuple(read_nifti(path).shape)
    except FileNotFoundError as error:
        raise VolumeError(path, "no such file") from error
    except zipfile.BadZipFile as error:
        raise VolumeError(path, f"truncated or corrupt zip archive ({error})") from error
    except Exception as error:  # nibabel raises many kinds for a bad header
        raise VolumeError(path, f"unreadable NIfTI header ({type(error).__name__}: {error})"
                          ) from error


def load_volume(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """`(data float32 [X, Y, Z], affine 4×4)`, or `VolumeError` saying what is wrong."""
    try:
        image = read_nifti(path)
        data = np.asarray(image.get_fdata(dtype=np.float32))
    except FileNotFoundError as error:
        raise VolumeError(path, "no such file") from error
    except zipfile.BadZipFile as error:
        raise VolumeError(path, f"truncated or corrupt zip archive ({error})") from error
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise VolumeError(path, f"truncated or corrupt compressed file ({error})") from error
    except Exception as error:  # nibabel's errors for broken headers and short data
        raise VolumeError(path, f"unreadable NIfTI ({type(error).__name__}: {error})") from error
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise VolumeError(path, f"{data.ndim}-D image of shape {data.shape}, expected one 3-D "
                          "volume")
    finite = np.isfinite(data)
    if not finite.all():
        raise VolumeError(path, f"{data.size - int(finite.sum())} NaN or infinite voxel(s)")
    if not data.any():
        raise VolumeError(path, "all voxels are zero")
    affine = np.asarray(image.affine, dtype=float)
    problem = affine_problem(affine)
    if problem:
        raise VolumeError(path, problem)
    return data, affine


def affine_problem(affine: np.ndarray) -> str:
    """What is wrong with a 4×4 voxel-to-world matrix ("" when nothing): it must be finite and
    its 3×3 part invertible (a header whose sform/qform is zero or degenerate has no
    orientation to reorient by)."""
    if not np.isfinite(affine).all():
        return "the affine (voxel-to-world matrix) has NaN or infinite entries"
    scales = np.linalg.svd(affine[:3, :3], compute_uv=False)
    if scales.min() <= 1e-6 * max(scales.max(), 1e-12):
        return (f"singular affine (voxel-to-world matrix {np.round(affine[:3], 3).tolist()}): "
                "the header's sform/qform gives no orientation; fix the header")
    return ""


class LoadVolumed(MapTransform):
    """Load a validated NIfTI as a channel-first MetaTensor [1, X, Y, Z] carrying its affine."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        out = dict(data)
        for key in self.key_iterator(out):
            array, affine = load_volume(out[key])
            out[key] = MetaTensor(torch.from_numpy(array)[None], affine=torch.as_tensor(affine),
                                  meta={"filename_or_obj": str(out[key])})
        return out


class DivideByMeand(MapTransform):
    """SFCN's normalisation: divide by the mean over the whole field of view, zeros included.
    The mean is summed in float64, so that it does not depend on how many threads sum it (a
    float32 sum does, by a rounding step of the stored float16 volume)."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        out = dict(data)
        for key in self.key_iterator(out):
            out[key] = out[key] / out[key].double().mean().to(out[key].dtype)
        return out


@dataclass(frozen=True)
class MinMax:
    """The original cVAE's global scaling x' = (x − lo) / (hi − lo), clipped to [0, 1] so that a
    sigmoid decoder can reach every target (the original left it unclipped: docs/science.md §5, #8).
    `clip=False` reproduces the original."""

    lo: float
    hi: float
    clip: bool = True

    @classmethod
    def fit(cls, minima: np.ndarray, maxima: np.ndarray) -> MinMax:
        """lo = 0.5th percentile of per-scan minima, hi = 99.5th of per-scan maxima."""
        lo, hi = float(np.percentile(minima, 0.5)), float(np.percentile(maxima, 99.5))
        if not hi > lo:
            raise InputError(f"cannot fit min-max scaling: hi {hi} ≤ lo {lo}")
        return cls(lo, hi)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        scaled = (image - self.lo) / (self.hi - self.lo)
        return scaled.clamp(0, 1) if self.clip else scaled
