"""Reading, resizing and normalising pairs; and clear errors on bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tifffile
from PIL import Image

from segkit.data import (
    DataError,
    Preprocessing,
    decode,
    find_samples,
    load_sample,
    original_size,
    read_mask,
)

SMALL = Preprocessing(size=(32, 32))


def test_defaults_follow_the_notebook(folders_copy):
    prep = Preprocessing()
    assert (prep.size, prep.channels, prep.normalize) == ((256, 256), 1, "divide255")
    sample = find_samples(folders_copy)[0]
    image, mask = load_sample(sample)
    assert image.shape == (256, 256, 1) and image.dtype == np.float32
    assert 0 <= image.min() and image.max() <= 1
    assert mask.shape == (256, 256, 1) and mask.dtype == np.uint8
    assert set(np.unique(mask)) == {0, 1}


def test_resize_is_antialiased_and_close_to_the_published_256_copy(figshare_256, figshare_512):
    # The 256 copy was made from the 512 originals with bilinear resizing.
    key = "38"
    original = find_samples(figshare_512)
    sample = next(s for s in original if s.key == key)
    image, mask = load_sample(sample)
    published = np.asarray(Image.open(figshare_256 / "images" / f"{key}.png"), np.float32) / 255
    assert np.abs(image[..., 0] - published).mean() < 0.01
    published_mask = np.asarray(Image.open(figshare_256 / "masks" / f"{key}_mask.png")) > 0
    overlap = (mask[..., 0] & published_mask).sum() / published_mask.sum()
    assert overlap > 0.95


def test_mask_at_original_resolution_and_size(folders_copy):
    sample = find_samples(folders_copy)[0]
    mask = read_mask(sample)
    assert mask.shape == (512, 512) and mask.dtype == np.uint8
    assert set(np.unique(mask)) == {0, 1}
    assert original_size(sample) == (512, 512)


def test_zscore_and_three_channels(folders_copy):
    sample = find_samples(folders_copy)[0]
    image, _ = load_sample(sample, Preprocessing(size=(32, 32), channels=3, normalize="zscore"))
    assert image.shape == (32, 32, 3)
    assert np.allclose(image.mean(axis=(0, 1)), 0, atol=1e-4)
    assert np.allclose(image.std(axis=(0, 1)), 1, atol=1e-3)
    assert np.array_equal(image[..., 0], image[..., 2])


def test_key_is_stable_and_names_every_setting():
    assert Preprocessing().key() == "256x256-c1-divide255"
    prep = Preprocessing(size=[64, 48], channels=["flair", "post-contrast"], normalize="zscore")
    assert prep.key() == "64x48-flair+post-contrast-zscore"
    assert prep.n_channels == 2
    with pytest.raises(ValueError):
        Preprocessing(channels=2)
    with pytest.raises(ValueError):
        Preprocessing(normalize="minmax")
    with pytest.raises(ValueError):
        Preprocessing(channels=("t2",))


def test_lgg_channels(lgg_copy):
    sample = find_samples(lgg_copy)[-1]
    raw = tifffile.imread(sample.image)
    flair, _ = decode(sample, Preprocessing(size=(256, 256)))
    assert np.array_equal(flair[..., 0], raw[..., 1])  # one channel means FLAIR
    picked, _ = decode(sample, Preprocessing(size=(256, 256), channels=("post-contrast", 0)))
    assert np.array_equal(picked, raw[..., [2, 0]])
    every, _ = decode(sample, Preprocessing(size=(32, 32), channels=3))
    assert every.shape == (32, 32, 3)


def test_named_channels_only_for_lgg(folders_copy):
    sample = find_samples(folders_copy)[0]
    with pytest.raises(DataError, match="only in LGG"):
        decode(sample, Preprocessing(size=(32, 32), channels=("flair",)))


def test_figshare_mat_orientation_and_scaling(mat_folder):
    import h5py

    sample = find_samples(mat_folder)[0]
    with h5py.File(sample.image) as f:
        stored = np.asarray(f["cjdata/image"])
    image, mask = decode(sample, Preprocessing(size=(48, 40)))
    assert stored.shape == (40, 48)  # column-major on disk: the transpose
    assert image.shape == (48, 40, 1)
    # Scaled to 0..255 by the slice's own range, pixel order kept.
    expected = (stored.T - stored.min()) * (255 / (stored.max() - stored.min()))
    assert np.abs(image[..., 0] - expected).max() <= 0.5 + 1e-3
    assert mask[10:20, 5:15].all() and mask.sum() == 100
    assert original_size(sample) == (48, 40)
    assert read_mask(sample).shape == (48, 40)


def test_truncated_png_is_an_error_naming_the_file(folders_copy):
    path = folders_copy / "images" / "38.png"
    path.write_bytes(path.read_bytes()[:3000])
    sample = find_samples(folders_copy)[0]
    with pytest.raises(DataError, match="cannot read .*38.png") as raised:
        decode(sample, SMALL)
    assert raised.value.path == path


def test_not_an_image_is_an_error(folders_copy):
    (folders_copy / "images" / "38.png").write_text("not a png")
    with pytest.raises(DataError, match="38.png"):
        decode(find_samples(folders_copy)[0], SMALL)


def test_non_binary_mask_is_an_error_naming_the_mask(folders_copy):
    path = folders_copy / "masks" / "38_mask.png"
    mask = np.asarray(Image.open(path)).copy()
    mask[:10, :10] = 128
    Image.fromarray(mask).save(path)
    with pytest.raises(DataError, match=r"38_mask.png is not binary: values 0, 128, 255"):
        decode(find_samples(folders_copy)[0], SMALL)


def test_mask_of_zero_and_one_is_accepted(folders_copy):
    path = folders_copy / "masks" / "38_mask.png"
    Image.fromarray((np.asarray(Image.open(path)) > 0).astype(np.uint8)).save(path)
    _, mask = decode(find_samples(folders_copy)[0], SMALL)
    assert mask.max() == 1


def test_size_mismatch_is_an_error(folders_copy):
    # 955 is natively 256x256: give it a 512x512 mask.
    shutil.copy(folders_copy / "masks" / "38_mask.png", folders_copy / "masks" / "955_mask.png")
    sample = next(s for s in find_samples(folders_copy) if s.key == "955")
    with pytest.raises(DataError, match="955.png is 256x256 but its mask .*955_mask.png is 512"):
        decode(sample, SMALL)


def test_lgg_empty_masks_are_kept(lgg_copy):
    samples = find_samples(lgg_copy)
    empty = [s for s in samples if read_mask(s).max() == 0]
    assert 0 < len(empty) < len(samples)
