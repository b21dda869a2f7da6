"""Label-map overlays: each class in its colour, named in a legend."""

from __future__ import annotations

import numpy as np

from segkit.visualize import TRUE_OUTLINE, class_colour, label_overlay

NAMES = ("background", "meningioma", "glioma", "pituitary")


def _label_map() -> np.ndarray:
    labels = np.zeros((96, 96), np.uint8)
    labels[50:80, 10:40] = 1
    labels[50:80, 50:90] = 3
    return labels


def test_each_class_is_drawn_in_its_colour_and_background_left_grey():
    image = np.full((96, 96), 100, np.uint8)
    picture = label_overlay(image, _label_map(), NAMES)
    assert picture.shape == (96, 96, 3)
    np.testing.assert_array_equal(picture[90, 90], (100, 100, 100))  # background
    for k, (row, col) in ((1, (50, 20)), (3, (50, 70))):
        assert tuple(picture[row, col]) == class_colour(k)  # outline in the class colour
        inside = picture[65, col].astype(int)
        expected = 0.55 * 100 + 0.45 * np.array(class_colour(k))
        np.testing.assert_allclose(inside, expected, atol=1)
    assert class_colour(1) != class_colour(3)


def test_legend_names_the_classes_shown_and_the_truth():
    image = np.full((96, 96), 100, np.uint8)
    without = label_overlay(image, _label_map(), NAMES)
    # The legend box is drawn top-left; a longer list of entries makes it taller.
    with_truth = label_overlay(image, _label_map(), NAMES, true=_label_map())
    assert tuple(without[3, 3]) == (0, 0, 0)
    rows_without = np.flatnonzero((without[:40, 3] == 0).all(axis=-1))
    rows_with = np.flatnonzero((with_truth[:40, 3] == 0).all(axis=-1))
    assert rows_with.max() > rows_without.max()
    assert (with_truth == TRUE_OUTLINE).all(axis=-1).any()
    plain = label_overlay(image, np.zeros((96, 96), np.uint8), NAMES)
    np.testing.assert_array_equal(plain, np.repeat(image[..., None], 3, axis=-1))  # no legend
