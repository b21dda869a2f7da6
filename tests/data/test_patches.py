"""3-D patches: foreground oversampling, the decoded-once cache, and augmentation."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from lgg_volumes import build_layout

from segkit.data import patches, volume_layout

PATCH = (8, 8, 8)
CENTRE = (4, 4, 4)  # PATCH // 2: where a centred voxel lands


def _write_layout(root, count=2, shape=(24, 24, 20), spacing=(1.0, 1.0, 2.0)):
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    rng = np.random.default_rng(0)
    for n in range(count):
        image = (100 + 20 * rng.standard_normal(shape)).astype(np.float32)
        labels = np.zeros(shape, np.uint8)
        if min(shape) >= 16:
            labels[10:13, 11:14, 8:10] = 1  # 18 voxels of foreground, far from the edges
            labels[5, 5, 5] = 2
        else:
            labels[2, 2, 2] = 1
        affine = np.diag([*spacing, 1.0])
        nib.save(nib.Nifti1Image(image, affine), root / "imagesTr" / f"case{n}.nii.gz")
        nib.save(nib.Nifti1Image(labels, affine), root / "labelsTr" / f"case{n}.nii.gz")
    cases, problems = volume_layout.scan_cases(root)
    assert not problems
    return cases


def _centre_share(dataset) -> tuple[float, list[bool]]:
    hits = []
    for index in range(len(dataset)):
        _, labels = dataset[index]
        hits += [bool(labels[(b, *CENTRE, 0)] > 0) for b in range(len(labels))]
    return float(np.mean(hits)), hits


@pytest.mark.backend  # a Keras PyDataset
def test_a_third_of_patches_are_centred_on_foreground(tmp_path):
    cases = _write_layout(tmp_path / "data")
    dataset = patches.PatchDataset(cases, PATCH, batch_size=3, steps=60, cache=tmp_path / "c")
    share, hits = _centre_share(dataset)
    # The last patch of every batch of three is centred on a labelled voxel ...
    assert all(hits[2::3])
    # ... and random patches rarely are (20 labelled voxels of 11,520).
    assert 1 / 3 <= share < 0.4
    none = patches.PatchDataset(
        cases, PATCH, batch_size=3, steps=60, foreground_share=0, cache=tmp_path / "c"
    )
    assert _centre_share(none)[0] < 0.07


@pytest.mark.parametrize("batch, forced", [(1, 0), (2, 1), (3, 1), (6, 2)])
def test_which_patches_of_a_batch_are_forced(tmp_path, batch, forced):
    cases = _write_layout(tmp_path / "data", count=1)
    dataset = patches.PatchDataset(cases, PATCH, batch_size=batch, steps=1)
    assert sum(dataset.forced_foreground(p) for p in range(batch)) == forced


@pytest.mark.backend
def test_cases_are_decoded_once_into_memory_maps(tmp_path, monkeypatch):
    cases = _write_layout(tmp_path / "data")
    first = patches.PatchDataset(
        cases, PATCH, batch_size=2, steps=3, cache=tmp_path / "cache", target_spacing=(2, 2, 2)
    )
    expected = [first[i] for i in range(3)]
    files = sorted((tmp_path / "cache" / "volumes").glob("*.npy"))
    assert len(files) == 3 * len(cases)

    def no_decoding(self, case):
        raise AssertionError(f"decoded {case.name} again")

    monkeypatch.setattr(patches.VolumeCache, "decode", no_decoding)
    again = patches.PatchDataset(
        cases, PATCH, batch_size=2, steps=3, cache=tmp_path / "cache", target_spacing=(2, 2, 2)
    )
    for index, (images, labels) in enumerate(expected):
        got_images, got_labels = again[index]
        np.testing.assert_array_equal(got_images, images)
        np.testing.assert_array_equal(got_labels, labels)
    image, labels, locations = again.cache.load(cases[0])
    assert isinstance(image, np.memmap) and isinstance(labels, np.memmap)
    # Resampled to 2 mm: 24 x 24 x 20 voxels of 1 x 1 x 2 mm make 12 x 12 x 20.
    assert labels.shape == (12, 12, 20) and image.shape == (12, 12, 20, 1)
    assert set(locations) == {1, 2}
    # Z-scored per case.
    assert abs(float(image.mean())) < 1e-3 and float(image.std()) == pytest.approx(1, abs=1e-3)


def test_a_volume_smaller_than_the_patch_is_padded(tmp_path):
    cases = _write_layout(tmp_path / "data", count=1, shape=(6, 7, 5))
    dataset = patches.PatchDataset(cases, (8, 8, 8), batch_size=2, steps=1, foreground_share=0)
    images, labels = dataset[0]
    assert images.shape == (2, 8, 8, 8, 1) and labels.shape == (2, 8, 8, 8, 1)
    assert (images[0, 7] == 0).all()  # beyond the 6 voxels of axis 0 (one before, one after)


def test_augmentation_moves_image_and_labels_together():
    rng = np.random.default_rng(3)
    labels = (rng.random((8, 8, 6)) > 0.7).astype(np.uint8)
    image = labels[..., None].astype(np.float32) * 5
    grid = np.indices((8, 8, 6)) - np.array([3.5, 3.5, 2.5])[:, None, None, None]
    ball = ((grid**2).sum(0) <= 9).astype(np.uint8)[..., None]
    still = dict(brightness=(1, 1), contrast=(1, 1), noise=0)
    exact = patches.Augment3D(flip=0.5, rotate=1.0, scale=None, **still)
    scaled = patches.Augment3D(flip=0.5, rotate=1.0, scale_chance=1.0, **still)
    changed = 0
    for seed in range(8):
        new_image, new_labels = exact(image, labels, np.random.default_rng(seed))
        assert new_image.shape == image.shape and new_labels.shape == labels.shape
        np.testing.assert_array_equal(new_image[..., 0] / 5, new_labels)
        changed += not np.array_equal(new_labels, labels)
        new_image, new_labels = scaled(ball * 5.0, ball[..., 0], np.random.default_rng(seed))
        assert new_image.shape == ball.shape and new_labels.shape == ball.shape[:3]
    # Scaling about the centre: the image linearly, the labels by nearest neighbour, so they
    # differ only on the small ball's surface; zooming in enlarges it.
    for factor in (0.85, 1.25):
        new_image, new_labels = patches._zoom(ball * 5.0, ball[..., 0], factor)
        assert np.mean((new_image[..., 0] / 5 > 0.5) == (new_labels > 0)) > 0.85
        assert (new_labels.sum() > ball.sum()) == (factor > 1)
    assert changed >= 6


def test_patches_from_real_lgg_volumes(lgg_root, tmp_path):
    names = sorted(p.name for p in lgg_root.iterdir() if p.is_dir())[:2]
    build_layout(lgg_root, names, tmp_path / "data", step=8)  # 32 x 32 x all slices
    cases, problems = volume_layout.scan_cases(tmp_path / "data")
    assert not problems and len(cases) == 2
    dataset = patches.PatchDataset(
        cases, (16, 16, 8), batch_size=3, steps=4, augment=None, cache=tmp_path / "cache"
    )
    for index in range(len(dataset)):
        images, labels = dataset[index]
        assert images.shape == (3, 16, 16, 8, 1) and np.isfinite(images).all()
        # The forced patch is centred on tumour.
        assert labels[2, 8, 8, 4, 0] == 1


def test_from_a_plan(tmp_path):
    cases = _write_layout(tmp_path / "data")
    plan = {
        "dims": 3,
        "modalities": ["CT"],
        "target_spacing": [2.0, 2.0, 2.0],
        "patch_size": [8, 8, 8],
        "batch_size": 3,
        "normalisation": [
            {"modality": "CT", "scheme": "ct", "clip": [90, 110], "mean": 100, "std": 10}
        ],
    }
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    dataset = patches.PatchDataset.from_plan(tmp_path / "plan.json", cases, steps=2)
    images, labels = dataset[0]
    assert images.shape == (3, 8, 8, 8, 1) and dataset.cache.target_spacing == (2.0, 2.0, 2.0)
    image, _, _ = dataset.cache.load(cases[0])
    assert image.min() >= -1 and image.max() <= 1  # clipped to 90..110, then (x - 100) / 10
    with pytest.raises(ValueError, match="the plan was made for 2"):
        patches.PatchDataset.from_plan(plan | {"modalities": ["T1", "T2"]}, cases)
    with pytest.raises(ValueError, match="3-D patches need a 3-D plan"):
        patches.PatchDataset.from_plan(plan | {"dims": 2}, cases)
