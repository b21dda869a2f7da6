"""Post-processing on real Figshare masks, checked against SciPy's own labelling."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from segkit.postprocess import (
    PostProcessing,
    apply,
    drop_small_regions,
    fill_holes,
    keep_largest_region,
    region_around_peak,
)

EIGHT = np.ones((3, 3), bool)


@pytest.fixture(scope="module")
def masks(figshare_256):
    """Binary masks with many regions and holes: 12 real tumour masks, and the same slices'
    images thresholded at three levels (bright skull, fat and tumour: dozens of regions each)."""
    keys = [1, 250, 720, 940, 1100, 1400, 1700, 1950, 2200, 2400, 2600, 2700]
    found = []
    for key in keys:
        found.append(np.asarray(Image.open(figshare_256 / "masks" / f"{key}_mask.png")) > 0)
        image = np.asarray(Image.open(figshare_256 / "images" / f"{key}.png").convert("L"))
        found.extend(image > level for level in (60, 120, 180))
    return found


def scipy_regions(mask) -> list[np.ndarray]:
    labels, count = ndimage.label(mask, structure=EIGHT)
    return [labels == k for k in range(1, count + 1)]


def test_the_real_masks_have_what_the_rules_remove(masks):
    # Otherwise the tests below could not fail.
    assert sum(len(scipy_regions(m)) > 1 for m in masks) >= 30
    assert sum((fill_holes(m) != m).any() for m in masks) >= 20


def test_largest_region_is_scipys_largest_region(masks):
    for mask in masks:
        regions = scipy_regions(mask)
        kept = keep_largest_region(mask)
        if not regions:
            assert not kept.any()
            continue
        largest = max(r.sum() for r in regions)
        assert any(np.array_equal(kept, r) for r in regions if r.sum() == largest)


def test_regions_are_eight_connected():
    diagonal = np.eye(4, dtype=bool)  # four pixels touching only at corners
    assert keep_largest_region(diagonal).sum() == 4
    assert drop_small_regions(diagonal, 4).sum() == 4


@pytest.mark.parametrize("min_size", [1, 20, 150])
def test_small_regions_are_dropped_as_scipy_counts_them(masks, min_size):
    for mask in masks:
        expected = np.zeros_like(mask)
        for region in scipy_regions(mask):
            if region.sum() >= min_size:
                expected |= region
        np.testing.assert_array_equal(drop_small_regions(mask, min_size), expected)


def test_holes_are_background_cut_off_from_the_border(masks):
    for mask in masks:
        # Background regions (4-connected, SciPy's default) that touch no border are holes.
        background, count = ndimage.label(~mask)
        border = np.unique(
            np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]])
        )
        holes = ~np.isin(background, border) & (background > 0)
        np.testing.assert_array_equal(fill_holes(mask), mask | holes)


def test_the_region_around_the_peak(figshare_256):
    image = np.asarray(Image.open(figshare_256 / "images" / "1100.png").convert("L"))
    probability = image.astype(np.float32) / 255 * 0.4  # below 0.5 everywhere: an empty mask
    region = region_around_peak(probability)
    peak = np.unravel_index(np.argmax(probability), probability.shape)
    above = probability >= probability[peak] / 2
    assert region[peak] and np.all(above[region])
    assert len(scipy_regions(region)) == 1
    # Nothing above half the peak touches the region without being in it.
    assert not (ndimage.binary_dilation(region, EIGHT) & above & ~region).any()
    assert not region_around_peak(np.zeros((8, 8))).any()


def test_at_least_one_fills_only_empty_masks(masks):
    probabilities = np.zeros((*masks[0].shape, 1), np.float32)
    probabilities[100:110, 50:60, 0] = 0.3
    probabilities[104, 55, 0] = 0.4
    rules = PostProcessing(at_least_one=True)
    empty = np.zeros(masks[0].shape, np.uint8)
    added = apply(empty, rules, probabilities)
    assert added.dtype == np.uint8 and added.sum() == 100 and added[104, 55] == 1
    np.testing.assert_array_equal(apply(masks[0].astype(np.uint8), rules, probabilities), masks[0])
    with pytest.raises(ValueError, match="needs the probabilities"):
        apply(empty, rules)


def test_the_rules_run_in_the_documented_order(masks):
    mask = masks[1].astype(np.uint8)  # a thresholded image: many regions and holes
    rules = PostProcessing(keep_largest=True, min_size=50, fill_holes=True)
    expected = fill_holes(keep_largest_region(drop_small_regions(mask, 50)))
    np.testing.assert_array_equal(apply(mask, rules), expected)
    # Regions all under min_size: dropped, then at-least-one brings back the peak's region.
    speck = np.zeros((32, 32), np.uint8)
    speck[3:5, 3:5] = 1
    probabilities = speck[..., None] * np.float32(0.9)
    rules = PostProcessing(min_size=10, at_least_one=True)
    np.testing.assert_array_equal(apply(speck, rules, probabilities), speck)
    assert not apply(speck, PostProcessing(min_size=10), probabilities).any()


def test_label_maps_are_processed_class_by_class(masks):
    tumour, other = masks[0], masks[4]  # a tumour mask and another slice's
    labels = np.where(tumour, 1, np.where(other, 2, 0)).astype(np.uint8)
    for rules in (PostProcessing(keep_largest=True), PostProcessing(min_size=40)):
        out = apply(labels, rules)
        for label in (1, 2):
            alone = apply((labels == label).astype(np.uint8), rules).astype(bool)
            np.testing.assert_array_equal(out == label, alone)
    # A class's holes are filled with background only: the other class stays where it was.
    ring = np.zeros((9, 9), np.uint8)
    ring[1:8, 1:8] = 1
    ring[3:6, 3:6] = 0
    ring[4, 4] = 2
    filled = apply(ring, PostProcessing(fill_holes=True))
    assert filled[4, 4] == 2 and (filled[3:6, 3:6] > 0).all()
    assert filled.sum() == ring.sum() + 8  # the 8 background pixels of the hole became 1


def test_at_least_one_in_a_label_map_takes_the_most_probable_class():
    probabilities = np.zeros((16, 16, 3), np.float32)
    probabilities[..., 0] = 1.0
    probabilities[2:6, 2:6, 1] = 0.2
    probabilities[9:12, 9:12, 2] = 0.3
    out = apply(np.zeros((16, 16), np.uint8), PostProcessing(at_least_one=True), probabilities)
    assert (out == 2).sum() == 9 and not (out == 1).any()


def test_no_rules_leave_the_mask_as_it_is(masks):
    mask = masks[1].astype(np.uint8)
    assert apply(mask, PostProcessing()) is mask
    assert not PostProcessing() and PostProcessing(fill_holes=True)


@pytest.mark.parametrize(
    "text",
    ["none", "largest", "min-size=25", "fill-holes,at-least-one", "largest,fill-holes"],
)
def test_rules_round_trip_as_text(text):
    assert str(PostProcessing.parse(text)) == text


def test_text_is_read_loosely_but_a_wrong_word_is_named():
    rules = PostProcessing.parse(" Fill-Holes, largest ")
    assert rules == PostProcessing(keep_largest=True, fill_holes=True)
    with pytest.raises(ValueError, match="'biggest' is not a rule; give none or"):
        PostProcessing.parse("biggest")
    with pytest.raises(ValueError, match="'min-size=-3' is not a rule"):
        PostProcessing.parse("min-size=-3")
    with pytest.raises(ValueError, match="min_size must be 0 or more"):
        PostProcessing(min_size=-1)


def test_min_size_scales_with_the_area():
    assert PostProcessing(min_size=50).scaled(4.0).min_size == 200
    assert PostProcessing(min_size=1).scaled(0.1).min_size == 1
    assert PostProcessing(fill_holes=True).scaled(4.0) == PostProcessing(fill_holes=True)


def test_at_least_one_for_regions_takes_the_most_probable_region_and_its_paint():
    # BraTS-like nested regions: whole (1, 2, 3), core (2, 3), enhancing (3), painted 1, 2, 3.
    regions = [(1, 2, 3), (2, 3), (3,)]
    probabilities = np.zeros((16, 16, 3), np.float32)
    probabilities[2:6, 2:6, 0] = 0.45  # the most probable pixels lie in the first region
    probabilities[9:12, 9:12, 1] = 0.3
    empty = np.zeros((16, 16), np.uint8)
    out = apply(empty, PostProcessing(at_least_one=True), probabilities, regions)
    # No channel is background here: the first region is a candidate like the others.
    assert (out == 1).sum() == 16 and not (out > 1).any()
    probabilities[10, 10, 1] = 0.9
    out = apply(empty, PostProcessing(at_least_one=True), probabilities, regions)
    assert out[10, 10] == 2 and not (out == 1).any()
    with pytest.raises(ValueError, match="one channel per region"):
        apply(empty, PostProcessing(at_least_one=True), probabilities[..., :2], regions)
