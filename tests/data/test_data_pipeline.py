"""Streaming batches with paired augmentation, on every Keras backend."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segkit.data import Augment, Preprocessing, SegmentationDataset, find_samples

SMALL = Preprocessing(size=(32, 32))


def test_augmentation_moves_image_and_mask_together():
    # An image equal to its mask must still equal it after any geometric change.
    rng = np.random.default_rng(0)
    geometric = Augment(brightness=0, contrast=0, gamma=0, rotation=20, scale=0.2, shift=0.1)
    mask = np.zeros((32, 32, 1), np.uint8)
    mask[4:12, 6:20] = 1
    for _ in range(20):
        image, moved = geometric(mask.astype(np.float32), mask, rng)
        assert image.dtype == np.float32 and moved.dtype == np.uint8
        assert set(np.unique(moved)) <= {0, 1}
        assert np.mean(np.round(image) == moved) > 0.97


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), height=st.sampled_from([16, 24]))
def test_augmentation_keeps_shapes_ranges_and_binary_masks(seed, height):
    rng = np.random.default_rng(seed)
    image = rng.random((height, 16, 2), np.float32)
    mask = (rng.random((height, 16, 1)) > 0.5).astype(np.uint8)
    out_image, out_mask = Augment()(image, mask, np.random.default_rng(seed))
    assert out_image.shape == image.shape and out_mask.shape == mask.shape
    assert 0 <= out_image.min() and out_image.max() <= 1
    assert set(np.unique(out_mask)) <= {0, 1}


def test_batches_shuffle_per_epoch_and_repeat_per_seed(folders_copy, tmp_path):
    samples = find_samples(folders_copy)
    dataset = SegmentationDataset(samples, SMALL, batch_size=4, augment=Augment(), seed=1)
    assert len(dataset) == 2
    images, masks = dataset[0]
    assert images.shape == (4, 32, 32, 1) and masks.shape == (4, 32, 32, 1)
    assert images.dtype == np.float32 and masks.dtype == np.float32
    assert dataset[1][0].shape == (2, 32, 32, 1)

    again = SegmentationDataset(
        samples, SMALL, batch_size=4, augment=Augment(), seed=1, cache=tmp_path
    )
    assert np.array_equal(again[0][0], images)  # same seed, epoch and index: same batch
    first_order = dataset._order.copy()
    dataset.on_epoch_end()
    assert dataset.epoch == 1 and not np.array_equal(dataset._order, first_order)
    assert not np.array_equal(dataset[0][0], images)
    with pytest.raises(IndexError):
        dataset[2]


def test_without_shuffle_order_is_the_samples(folders_copy):
    samples = find_samples(folders_copy)
    dataset = SegmentationDataset(samples, SMALL, batch_size=6, shuffle=False)
    dataset.on_epoch_end()
    assert list(dataset._order) == list(range(6))


@pytest.mark.backend
def test_fit_streams_from_disk_on_this_backend(backend, folders_copy, tmp_path):
    import keras

    samples = find_samples(folders_copy)
    dataset = SegmentationDataset(
        samples, SMALL, batch_size=3, augment=Augment(), cache=tmp_path, workers=2
    )
    inputs = keras.Input((32, 32, 1))
    outputs = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    history = model.fit(dataset, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()
    assert dataset.epoch >= 2  # Keras may also end an epoch around fit()


def test_random_crops_keep_pairs_aligned_and_favour_the_tumour():
    from segkit.data.augment import random_crop

    image = np.arange(64 * 64, dtype=np.float32).reshape(64, 64, 1)
    mask = np.zeros((64, 64, 1), np.uint8)
    mask[50:54, 4:8] = 1  # a small tumour in a corner
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(50):
        cropped, cropped_mask = random_crop(image, mask, (16, 16), rng)
        assert cropped.shape == (16, 16, 1) and cropped_mask.shape == (16, 16, 1)
        top, left = divmod(int(cropped[0, 0, 0]), 64)
        np.testing.assert_array_equal(cropped_mask, mask[top : top + 16, left : left + 16])
        hits += bool(cropped_mask.any())
    assert hits >= 30  # uniform windows would contain the tumour about 12% of the time
    with pytest.raises(ValueError, match="larger than the image"):
        random_crop(image, mask, (65, 16), rng)


def test_dataset_crops_training_batches(folders_copy):
    samples = find_samples(folders_copy)
    batches = SegmentationDataset(
        samples, Preprocessing(size=(32, 32)), batch_size=2, crop=(16, 16), seed=1
    )
    images, masks = batches[0]
    assert images.shape == (2, 16, 16, 1) and masks.shape == (2, 16, 16, 1)
