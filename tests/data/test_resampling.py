"""Resampling to a target spacing and back keeps where every voxel lies in the world."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segkit.data import resampling
from segkit.data.volumes import Volume

CENTRE = np.array([3.0, -5.0, 10.0])  # mm, the blob's centre in the world


def _anisotropic_flipped_affine() -> np.ndarray:
    """Voxel axes permuted and flipped against the world, spacings 0.9, 0.7 and 3 mm."""
    affine = np.zeros((4, 4))
    affine[:3, 0] = [0.0, -0.9, 0.0]  # axis 0 runs towards posterior
    affine[:3, 1] = [-0.7, 0.0, 0.0]  # axis 1 towards the patient's left
    affine[:3, 2] = [0.0, 0.0, 3.0]  # axis 2 superior, thick slices
    affine[:3, 3] = [10.0, 12.0, -8.0]
    affine[3, 3] = 1
    return affine


def _world(shape, affine) -> np.ndarray:
    index = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
    return index @ affine[:3, :3].T + affine[:3, 3]


def _blob(shape, affine, radius=6.0) -> np.ndarray:
    """A smooth image: a Gaussian blob at CENTRE, sampled on the grid."""
    distance2 = ((_world(shape, affine) - CENTRE) ** 2).sum(-1)
    return np.exp(-distance2 / (2 * radius**2)).astype(np.float32)


def _ball(shape, affine, radius=7.0) -> np.ndarray:
    distance = np.sqrt(((_world(shape, affine) - CENTRE) ** 2).sum(-1))
    return (distance <= radius).astype(np.uint8)


def _dice(a, b) -> float:
    return 2 * (a & b).sum() / (a.sum() + b.sum())


SHAPE = (32, 30, 12)


def test_round_trip_keeps_geometry_on_flipped_anisotropic_volume():
    affine = _anisotropic_flipped_affine()
    scan = Volume(_blob(SHAPE, affine), affine, Path("scan.nii.gz"))
    iso = resampling.resample_volume(scan, (1.0, 1.0, 1.0))
    assert iso.spacing == pytest.approx((1.0, 1.0, 1.0))
    assert iso.shape == (29, 21, 36)  # round(32 * 0.9), round(30 * 0.7), 12 * 3
    # The axes keep their world directions, flips included.
    directions = iso.affine[:3, :3] / np.array(iso.spacing)
    np.testing.assert_allclose(directions, affine[:3, :3] / np.array(scan.spacing), atol=1e-12)
    # Each new voxel holds the blob's value at its own world position.
    np.testing.assert_allclose(iso.array, _blob(iso.shape, iso.affine), atol=0.02)

    back = resampling.resample_volume(iso, scan.spacing)
    assert back.shape == scan.shape
    np.testing.assert_allclose(back.affine, scan.affine, atol=1e-5, rtol=0)
    np.testing.assert_allclose(back.array, scan.array, atol=0.03)


def test_labels_come_back_onto_the_case_grid():
    affine = _anisotropic_flipped_affine()
    truth = _ball(SHAPE, affine)
    shape, iso_affine = resampling.target_geometry(SHAPE, affine, (1.0, 1.0, 1.0))
    for mode in ("nearest", "linear"):
        iso = resampling.resample_to(truth, affine, shape, iso_affine, kind="labels", labels=mode)
        assert iso.dtype == np.uint8 and set(np.unique(iso)) == {0, 1}
        # On the fine grid the labels are the ball at each voxel's world position ...
        dice = (
            2
            * (iso & _ball(shape, iso_affine)).sum()
            / (iso.sum() + _ball(shape, iso_affine).sum())
        )
        assert dice > 0.9, mode
        back = resampling.resample_to(iso, iso_affine, SHAPE, affine, kind="labels", labels=mode)
        # ... and back on the case's own voxels they are nearly the labels it had.
        assert back.shape == SHAPE
        assert _dice(back, truth) > 0.95, mode


def test_flipping_the_stored_axes_flips_the_result():
    affine = _anisotropic_flipped_affine()
    image = _blob(SHAPE, affine) + np.linspace(0, 0.3, SHAPE[0])[:, None, None]
    # The same world content stored with axis 1 reversed: the affine says so.
    flip = np.eye(4)
    flip[1, 1], flip[1, 3] = -1, SHAPE[1] - 1
    flipped = Volume(image[:, ::-1].copy(), affine @ flip, Path("flipped.nii.gz"))
    plain = resampling.resample_volume(Volume(image, affine, Path("plain.nii.gz")), (1, 1, 1))
    other = resampling.resample_volume(flipped, (1, 1, 1))
    np.testing.assert_allclose(other.array, plain.array[:, ::-1], atol=1e-4)


def test_linear_labels_keep_several_classes():
    labels = np.zeros((16, 16, 16), np.uint8)
    labels[2:8, 2:8, 2:8], labels[9:14, 9:14, 9:14] = 1, 3
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    shape, fine = resampling.target_geometry(labels.shape, affine, (0.5, 0.5, 1.0))
    out = resampling.resample_to(labels, affine, shape, fine, kind="labels", labels="linear")
    assert shape == (32, 32, 32) and set(np.unique(out)) == {0, 1, 3}


def test_channels_are_resampled_one_by_one():
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    image = np.stack([_blob((16, 16, 16), affine), 1 - _blob((16, 16, 16), affine)], -1)
    shape, fine = resampling.target_geometry(image.shape, affine, (4.0, 4.0, 4.0))
    out = resampling.resample_to(image, affine, shape, fine)
    assert out.shape == (8, 8, 8, 2)
    np.testing.assert_allclose(out[..., 0] + out[..., 1], 1, atol=1e-4)


@pytest.mark.parametrize("spacing", [(1.0, 0.0, 1.0), (1.0, float("nan"), 1.0), (-1, 1, 1)])
def test_bad_spacing_is_refused(spacing):
    with pytest.raises(ValueError, match="target spacing"):
        resampling.target_geometry((16, 16, 16), np.eye(4), spacing)
