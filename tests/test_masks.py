"""Round trips and input checks of segkit.masks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from segkit import masks

FEW = settings(max_examples=40, deadline=None)

shapes_2d = st.tuples(st.integers(1, 9), st.integers(1, 9))
binary_masks = hnp.arrays(np.uint8, shapes_2d, elements=st.integers(0, 1))
orders = st.sampled_from(["F", "C"])


def special_masks():
    """Empty, full, one-pixel and odd-shaped masks: the edge cases of every encoding."""
    one_pixel = np.zeros((7, 5), np.uint8)
    one_pixel[6, 4] = 1
    corner = np.zeros((3, 11), np.uint8)
    corner[0, 0] = 1
    return [
        np.zeros((4, 6), np.uint8),
        np.ones((5, 3), np.uint8),
        np.ones((1, 1), np.uint8),
        np.zeros((1, 1), np.uint8),
        one_pixel,
        corner,
        np.eye(7, 13, dtype=np.uint8),
    ]


def kaggle_rle(mask: np.ndarray) -> str:
    """The widely copied Kaggle encoder, as an independent reference."""
    pixels = np.concatenate([[0], mask.T.flatten(), [0]])
    runs = np.where(pixels[1:] != pixels[:-1])[0] + 1
    runs[1::2] -= runs[::2]
    return " ".join(str(x) for x in runs)


@FEW
@given(binary_masks, orders)
def test_rle_round_trip(mask, order):
    encoded = masks.rle_encode(mask, order=order)
    decoded = masks.rle_decode(encoded, mask.shape, order=order)
    assert decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, mask)


@pytest.mark.parametrize("mask", special_masks(), ids=lambda m: f"{m.shape}-{m.sum()}")
@pytest.mark.parametrize("order", ["F", "C"])
def test_rle_round_trip_edge_cases(mask, order):
    np.testing.assert_array_equal(
        masks.rle_decode(masks.rle_encode(mask, order), mask.shape, order), mask
    )


@FEW
@given(binary_masks)
@example(np.zeros((3, 3), np.uint8))
@example(np.ones((2, 5), np.uint8))
def test_rle_matches_kaggle_convention(mask):
    assert masks.rle_encode(mask) == kaggle_rle(mask)


def test_rle_known_values():
    mask = np.array([[0, 1, 1], [0, 1, 0]], np.uint8)
    # Column-major pixel numbers 1..6 run down columns: foreground at 3, 4, 5.
    assert masks.rle_encode(mask) == "3 3"
    # Row-major numbers run along rows: foreground at 2, 3 and 5.
    assert masks.rle_encode(mask, order="C") == "2 2 5 1"
    assert masks.rle_encode(np.zeros((2, 2))) == ""
    assert masks.rle_encode(np.ones((2, 2), bool)) == "1 4"


def test_rle_decode_accepts_unsorted_runs_and_sequences():
    expected = masks.rle_decode("1 2 6 1", (3, 3))
    np.testing.assert_array_equal(masks.rle_decode("6 1 1 2", (3, 3)), expected)
    np.testing.assert_array_equal(masks.rle_decode([1, 2, 6, 1], (3, 3)), expected)
    np.testing.assert_array_equal(masks.rle_decode(None, (2, 2)), np.zeros((2, 2)))
    np.testing.assert_array_equal(masks.rle_decode("", (2, 2)), np.zeros((2, 2)))


@pytest.mark.parametrize(
    ("rle", "message"),
    [
        ("1 2 5", "odd count"),
        ("1 2 2 2", "overlapping"),
        ("0 2", "at least 1"),
        ("3 0", "lengths"),
        ("9 2", "past the last pixel"),
        ("1 x", "integers"),
        ([1.5, 2.0], "integers"),
    ],
)
def test_rle_decode_rejects_bad_rle(rle, message):
    with pytest.raises(ValueError, match=message):
        masks.rle_decode(rle, (3, 3))
    with pytest.raises(ValueError, match="rle"):
        masks.rle_decode(rle, (3, 3))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shape": (9,)}, "shape"),
        ({"shape": (3, 0)}, "shape"),
        ({"shape": (3, 3), "order": "A"}, "order"),
    ],
)
def test_rle_decode_rejects_bad_shape_and_order(kwargs, message):
    with pytest.raises(ValueError, match=message):
        masks.rle_decode("1 1", **kwargs)


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (np.full((3, 3), 0.5), "mask must be binary"),
        (np.full((3, 3), 255, np.uint8), "mask must be binary"),
        (np.zeros((2, 3, 3)), "mask must have 2 dimensions"),
        (np.zeros((3, 3, 1)), "squeeze the channel axis"),
        (np.array([["a"]]), "mask must be a boolean or numeric"),
    ],
)
def test_rle_encode_rejects_bad_masks(mask, message):
    with pytest.raises(ValueError, match=message):
        masks.rle_encode(mask)


@FEW
@given(binary_masks)
def test_flatten_round_trip(mask):
    indices = masks.flatten(mask)
    np.testing.assert_array_equal(indices, np.flatnonzero(mask))
    np.testing.assert_array_equal(masks.unflatten(indices, mask.shape), mask)


@pytest.mark.parametrize("mask", special_masks(), ids=lambda m: f"{m.shape}-{m.sum()}")
def test_flatten_round_trip_edge_cases(mask):
    np.testing.assert_array_equal(masks.unflatten(masks.flatten(mask), mask.shape), mask)


def test_flatten_is_row_major_and_handles_volumes():
    mask = np.array([[0, 1], [1, 0]], bool)
    np.testing.assert_array_equal(masks.flatten(mask), [1, 2])
    volume = np.zeros((2, 3, 4), np.uint8)
    volume[1, 2, 3] = 1
    np.testing.assert_array_equal(masks.flatten(volume), [23])
    np.testing.assert_array_equal(masks.unflatten([23], (2, 3, 4)), volume)


@pytest.mark.parametrize(
    ("indices", "message"),
    [
        ([-1, 2], "non-negative"),
        ([9], "below 9"),
        ([1, 1], "repeat"),
        ([[1]], "1-D"),
        ([1.0], "integers"),
    ],
)
def test_unflatten_rejects_bad_indices(indices, message):
    with pytest.raises(ValueError, match=f"indices.*{message}|{message}"):
        masks.unflatten(np.array(indices), (3, 3))


def test_flatten_rejects_wrong_rank_and_values():
    with pytest.raises(ValueError, match="mask must have 2 or 3 dimensions"):
        masks.flatten(np.zeros(5))
    with pytest.raises(ValueError, match="mask must be binary"):
        masks.flatten(np.full((2, 2), 0.3))


def test_binarize():
    prob = np.array([[0.2, 0.5], [0.51, 1.0]])
    np.testing.assert_array_equal(masks.binarize(prob), [[0, 0], [1, 1]])
    np.testing.assert_array_equal(masks.binarize(prob, threshold=0.1), [[1, 1], [1, 1]])
    assert masks.binarize(prob).dtype == np.uint8
    with pytest.raises(ValueError, match="prob contains NaN"):
        masks.binarize(np.array([np.nan]))
    with pytest.raises(ValueError, match="prob must be numeric"):
        masks.binarize(np.array(["x"]))


@FEW
@given(
    st.integers(1, 6).flatmap(
        lambda n: st.tuples(
            st.just(n), hnp.arrays(np.int64, shapes_2d, elements=st.integers(0, n - 1))
        )
    )
)
def test_one_hot_round_trip(case):
    num_classes, labels = case
    encoded = masks.one_hot(labels, num_classes)
    assert encoded.shape == (*labels.shape, num_classes)
    np.testing.assert_array_equal(encoded.sum(axis=-1), 1)
    np.testing.assert_array_equal(masks.from_one_hot(encoded), labels)


def test_one_hot_checks():
    np.testing.assert_array_equal(masks.one_hot(np.array([0.0, 2.0]), 3), [[1, 0, 0], [0, 0, 1]])
    with pytest.raises(ValueError, match="labels must be below num_classes=2"):
        masks.one_hot([0, 2], 2)
    with pytest.raises(ValueError, match="labels must be non-negative"):
        masks.one_hot([-1], 2)
    with pytest.raises(ValueError, match="labels must be whole numbers"):
        masks.one_hot([0.5], 2)
    with pytest.raises(ValueError, match="num_classes"):
        masks.one_hot([0], 0)
    with pytest.raises(ValueError, match="onehot must have exactly one 1"):
        masks.from_one_hot(np.array([[1, 1], [0, 1]]))
    with pytest.raises(ValueError, match="onehot must be binary"):
        masks.from_one_hot(np.array([[0.3, 0.7]]))


def test_real_masks_round_trip(figshare_256):
    import imageio.v3 as iio

    for path in sorted((figshare_256 / "masks").glob("*_mask.png"))[:20]:
        mask = iio.imread(path) > 0
        encoded = masks.rle_encode(mask)
        assert encoded == kaggle_rle(mask.astype(np.uint8))
        np.testing.assert_array_equal(masks.rle_decode(encoded, mask.shape), mask)
