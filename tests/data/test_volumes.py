"""Loading, validating and preprocessing one volume."""

import gzip

import numpy as np
import pytest
import torch

from neurocvae.data.volumes import DivideByMeand, MinMax, Preprocessing, VolumeError, load_volume
from tests.data.conftest import RAS_2MM, SHAPE, brain, write_nifti


def test_mean_normalisation_uses_the_whole_field_of_view_before_the_crop(tmp_path):
    data = brain(0)
    path = write_nifti(tmp_path / "a.nii.gz", data)
    out = Preprocessing(shape=(8, 8, 8), normalise="mean")(path)
    assert out.shape == (1, 8, 8, 8) and out.dtype == torch.float32
    expected = data / data.mean()
    np.testing.assert_allclose(out[0].numpy(), expected[2:10, 3:11, 1:9], rtol=1e-5)


def test_an_las_file_gives_the_same_array_as_its_ras_twin(tmp_path):
    data = brain(1)
    ras = write_nifti(tmp_path / "ras.nii.gz", data)
    las_affine = RAS_2MM.copy()
    las_affine[0, 0], las_affine[0, 3] = -2.0, 2.0 * (SHAPE[0] - 1)  # FSL's radiological order
    las = write_nifti(tmp_path / "las.nii.gz", data[::-1], las_affine)
    prep = Preprocessing(shape=(10, 12, 8))
    torch.testing.assert_close(prep(las), prep(ras))


def test_resampling_and_brain_zscore(tmp_path):
    path = write_nifti(tmp_path / "a.nii.gz", brain(2))
    out = Preprocessing(voxel_size=4.0, shape=None, normalise="zscore_brain")(path)
    assert out.shape == (1, 6, 8, 6)  # MONAI keeps the field of view: ceil(extent / 4 mm)
    inside = out[out != 0]
    assert abs(float(inside.mean())) < 1e-4 and abs(float(inside.std()) - 1) < 0.05


def test_minmax_is_fitted_on_percentiles_and_clipped_unless_asked():
    minima, maxima = np.zeros(200), np.linspace(1, 10, 200)
    scale = MinMax.fit(minima, maxima)
    assert scale.lo == 0 and scale.hi == pytest.approx(np.percentile(maxima, 99.5))
    assert float(scale(torch.tensor(20.0))) == 1 and float(scale(torch.tensor(-1.0))) == 0
    assert float(scale(torch.tensor(5.0))) == pytest.approx(5 / scale.hi)
    original = MinMax(scale.lo, scale.hi, clip=False)
    assert float(original(torch.tensor(20.0))) > 1


@pytest.mark.parametrize(("make", "problem"), [
    (lambda p: p, "no such file"),
    (lambda p: p.write_bytes(gzip.compress(b"\x00" * 400)[:50]) and p,
     "unreadable NIfTI"),
    (lambda p: write_nifti(p, np.ones((*SHAPE, 3))), "4-D image of shape (12, 14, 10, 3)"),
    (lambda p: write_nifti(p, np.where(brain(0) > 0, np.nan, 0)), "NaN or infinite"),
    (lambda p: write_nifti(p, np.full(SHAPE, np.inf)), "1680 NaN or infinite voxel(s)"),
    (lambda p: write_nifti(p, np.zeros(SHAPE)), "all voxels are zero"),
])
def test_a_bad_volume_is_named_with_its_problem(tmp_path, make, problem):
    path = tmp_path / "bad.nii.gz"
    make(path)
    with pytest.raises(VolumeError) as raised:
        load_volume(path)
    assert str(path) in str(raised.value) and problem in str(raised.value)


def test_a_truncated_volume_is_named(tmp_path):
    path = write_nifti(tmp_path / "cut.nii.gz", brain(0))
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(VolumeError, match=r"cut\.nii\.gz: truncated or corrupt"):
        load_volume(path)


def test_a_volume_with_a_trailing_singleton_axis_is_accepted(tmp_path):
    path = write_nifti(tmp_path / "a.nii.gz", brain(0)[..., None])
    assert load_volume(path)[0].shape == SHAPE


def test_the_mean_normalisation_does_not_depend_on_the_thread_count():
    """A worker process sums with one thread, the main one with several: the stored float16
    volume must be the same (a float32 mean differed by a rounding step)."""
    volume = torch.rand(1, 96, 96, 96, generator=torch.Generator().manual_seed(0)) * 3
    threads = torch.get_num_threads()
    stored = []
    try:
        for count in (1, 4):
            torch.set_num_threads(count)
            stored.append(DivideByMeand("image")({"image": volume})["image"].half())
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(*stored)
