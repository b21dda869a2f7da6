"""nnU-Net-style regions and unlabelled pixels on real Figshare label maps: the conversions
between a label map and its region channels, reading, and scoring per region."""

from __future__ import annotations

import json
import math

import imageio.v3 as iio
import numpy as np
import pytest
from click.testing import CliRunner
from scipy import ndimage
from scipy.spatial.distance import cdist

from segkit import data, masks, reports
from segkit.cli import cli
from segkit.data.classes import Regions, parse_regions
from segkit.data.errors import DataError

TUMOUR_TYPES = ("background", "meningioma", "glioma", "pituitary")
FIGSHARE_REGIONS = "tumour=1,2,3;glioma=2"  # overlapping: every glioma pixel is tumour too
BRATS = [[1, 2, 3], [1, 3], [3]]  # whole tumour, tumour core, enhancing tumour


@pytest.fixture(scope="module")
def label_maps(figshare_512):
    """The Figshare originals as label maps (background + tumour type), and imperfect
    predictions of them: grown by two pixels, shifted, and every third of the wrong type."""
    samples = data.find_samples(figshare_512)
    truths, predictions = [], []
    for index, sample in enumerate(samples):
        true = data.read_mask(sample, num_classes=4, class_source="sample-label")
        grown = np.roll(ndimage.binary_dilation(true > 0, iterations=2), (3, -2), axis=(0, 1))
        label = sample.label if index % 3 else sample.label % 3 + 1
        truths.append(true)
        predictions.append((grown * label).astype(np.uint8))
    return samples, truths, predictions


@pytest.fixture(scope="module")
def nested_label_maps(figshare_512):
    """BraTS-like label maps made from real tumour masks: the outer ring 2 (oedema), the
    inside 1 (core), the innermost part 3 (enhancing)."""
    maps = []
    for sample in data.find_samples(figshare_512)[:8]:
        tumour = data.read_mask(sample) > 0
        core = ndimage.binary_erosion(tumour, iterations=3)
        enhancing = ndimage.binary_erosion(tumour, iterations=6)
        maps.append((2 * tumour - core + 2 * enhancing).astype(np.uint8))
    assert all(set(np.unique(m)) == {0, 1, 2, 3} for m in maps)
    return maps


def test_regions_from_labels_marks_each_region(label_maps):
    _, truths, _ = label_maps
    true = truths[0]
    channels = masks.regions_from_labels(true, [[1, 2, 3], [2]])
    assert channels.shape == (*true.shape, 2) and channels.dtype == np.uint8
    np.testing.assert_array_equal(channels[..., 0], true > 0)
    np.testing.assert_array_equal(channels[..., 1], true == 2)


def test_painting_nested_regions_gives_back_the_label_map(nested_label_maps):
    assert masks.paint_order(BRATS) == [(0, 2), (1, 1), (2, 3)]
    for labels in nested_label_maps:
        channels = masks.regions_from_labels(labels, BRATS)
        np.testing.assert_array_equal(masks.labels_from_regions(channels, BRATS), labels)
        probabilities = np.where(channels == 1, 0.8, 0.3)  # painted where above the threshold
        np.testing.assert_array_equal(masks.to_mask(probabilities, 0.5, BRATS), labels)


def test_painting_overlapping_regions_keeps_every_region(label_maps):
    _, truths, _ = label_maps
    regions = parse_regions(FIGSHARE_REGIONS, TUMOUR_TYPES).labels
    for true in truths:
        channels = masks.regions_from_labels(true, regions)
        painted = masks.labels_from_regions(channels, regions)
        # A tumour that is no glioma takes the tumour region's smallest other label.
        assert set(np.unique(painted)) <= {0, 1, 2}
        np.testing.assert_array_equal(masks.regions_from_labels(painted, regions), channels)


@pytest.mark.parametrize(
    ("regions", "message"),
    [
        ([], "at least one region"),
        ([[0, 1]], "distinct labels of 1 or more"),
        ([[1, 2], [2, 1]], "two regions hold the same labels"),
        ([[1, 2], [1], [2]], r"region \[1, 2\] has no label of its own"),
    ],
)
def test_regions_that_cannot_be_painted_are_refused(regions, message):
    with pytest.raises(ValueError, match=message):
        masks.paint_order(regions)


def test_labels_from_regions_needs_a_channel_per_region():
    with pytest.raises(ValueError, match=r"one channel per region \(3\), got shape \(4, 4, 2\)"):
        masks.labels_from_regions(np.zeros((4, 4, 2)), BRATS)


def test_parse_regions_names_and_checks():
    regions = parse_regions("whole=1,2,3; core=1,3; 3", ["background", "ncr", "ed", "et"])
    assert regions == Regions(("whole", "core", "et"), ((1, 2, 3), (1, 3), (3,)))
    assert parse_regions(str(regions)) == regions  # the text form reads back
    assert parse_regions("1,2;2").names == ("1+2", "2")
    assert parse_regions({"tumour": [1, 2, 3]}).labels == ((1, 2, 3),)
    with pytest.raises(ValueError, match="region 'tumour' holds the label 4; the label maps"):
        parse_regions("tumour=1,4", TUMOUR_TYPES)
    with pytest.raises(ValueError, match="regions: cannot read 'tumour=one'"):
        parse_regions("tumour=one")


def test_unlabelled_pixels_are_kept_only_with_ignore_index(tmp_path, label_maps):
    _, truths, _ = label_maps
    marked = truths[0].copy()
    marked[:20, :20] = 255
    path = tmp_path / "1_mask.png"
    iio.imwrite(path, marked)
    with pytest.raises(DataError, match=r"1_mask.png is a label map holding the value 255"):
        data.read_mask_file(path, num_classes=4)
    np.testing.assert_array_equal(data.read_mask_file(path, 4, ignore_index=255), marked)


def test_preprocessing_keeps_unlabelled_pixels_through_resizing(tmp_path, label_maps):
    samples, truths, _ = label_maps
    root = _label_map_folder(tmp_path, samples[:1], truths[:1], unlabelled=True)
    sample = data.find_samples(root)[0]
    prep = data.Preprocessing(size=(64, 64), num_classes=4, ignore_index=255)
    _, mask = data.preprocess.decode(sample, prep)
    assert mask.shape == (64, 64, 1) and mask[0, 0, 0] == 255 and set(np.unique(mask)) > {255}
    assert prep.key() != data.Preprocessing(size=(64, 64), num_classes=4).key()
    with pytest.raises(DataError, match="holding the value 255"):
        data.preprocess.decode(sample, data.Preprocessing(size=(64, 64), num_classes=4))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"ignore_index": 255}, "ignore_index needs label-map masks"),
        ({"num_classes": 4, "class_source": "sample-label", "ignore_index": 255}, "label-map"),
        ({"num_classes": 4, "ignore_index": 2}, "from num_classes"),
    ],
)
def test_ignore_index_that_cannot_apply_is_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        data.Preprocessing(**settings)


def _surface_points(mask: np.ndarray) -> np.ndarray:
    """Foreground pixels with a 4-neighbour outside the mask (the edge counts as outside)."""
    padded = np.pad(mask, 1)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:] & mask
    return np.argwhere(mask & ~inner)


def _reference(pred: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    """Dice from pixel counts and HD95 from all pairwise surface distances (MONAI's)."""
    dice = 2 * np.sum(pred & true) / (pred.sum() + true.sum())
    distances = cdist(_surface_points(pred), _surface_points(true))
    hd95 = max(np.percentile(distances.min(axis=1), 95), np.percentile(distances.min(axis=0), 95))
    return float(dice), float(hd95)


def _write_predictions(folder, samples, predictions):
    folder.mkdir()
    for sample, pred in zip(samples, predictions, strict=True):
        iio.imwrite(folder / f"{sample.key}_mask.png", pred)


def _label_map_folder(tmp_path, samples, truths, unlabelled=False):
    """A folders-layout copy of the samples with label-map masks and a classes.json; with
    ``unlabelled``, the top-left 20x20 corner of each mask is 255."""
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for sample, true in zip(samples, truths, strict=True):
        true = true.copy()
        if unlabelled:
            true[:20, :20] = 255
        iio.imwrite(root / "images" / f"{sample.key}.png", iio.imread(sample.image))
        iio.imwrite(root / "masks" / f"{sample.key}_mask.png", true)
    (root / "classes.json").write_text(json.dumps(TUMOUR_TYPES))
    return root


def test_region_scores_match_the_reference(tmp_path, figshare_512, label_maps):
    samples, truths, predictions = label_maps
    _write_predictions(tmp_path / "pred", samples, predictions)
    report = reports.evaluate(
        None,
        figshare_512,
        predictions=tmp_path / "pred",
        classes="tumour-type",
        regions=FIGSHARE_REGIONS,
    )
    assert report["regions"] == {"tumour": [1, 2, 3], "glioma": [2]}
    assert list(report["classes"]) == ["tumour", "glioma"]
    checked = 0
    for entry, true, pred in zip(report["images"], truths, predictions, strict=True):
        for name, labels in report["regions"].items():
            in_pred, in_true = np.isin(pred, labels), np.isin(true, labels)
            scores = entry["classes"][name]
            if not in_pred.any() and not in_true.any():
                assert scores["dice"] is None  # left out of the region's mean
            elif not in_pred.any() or not in_true.any():
                assert scores["dice"] == 0 and scores["hd95"] is None
            else:
                dice, hd95 = _reference(in_pred, in_true)
                assert scores["dice"] == pytest.approx(dice, abs=1e-5)
                assert scores["hd95"] == pytest.approx(hd95, abs=1e-5)
                checked += 1
    assert checked >= 20
    tumour = report["classes"]["tumour"]
    assert tumour["n_images"] == len(samples)
    expected = np.mean([e["classes"]["tumour"]["dice"] for e in report["images"]])
    assert tumour["dice_mean"] == pytest.approx(expected, abs=1e-12)
    assert report["dice_mean"] == pytest.approx(
        np.mean([c["dice_mean"] for c in report["classes"].values()])
    )
    table = reports.format_table(report).splitlines()
    assert [line.split()[0] for line in table[2:4]] == ["tumour", "glioma"]
    assert any(line.startswith("(regions:") for line in table)


def test_unlabelled_pixels_are_not_scored(tmp_path, label_maps):
    samples, truths, predictions = label_maps
    root = _label_map_folder(tmp_path, samples, truths, unlabelled=True)
    wrong = []
    for pred in predictions:
        pred = pred.copy()
        pred[:20, :20] = 3  # whatever is predicted where nothing is labelled
        wrong.append(pred)
    _write_predictions(tmp_path / "wrong", samples, wrong)
    _write_predictions(tmp_path / "right", samples, predictions)
    scored = {
        name: reports.evaluate(None, root, predictions=tmp_path / name, ignore_index=255)
        for name in ("wrong", "right")
    }
    assert scored["wrong"]["classes"] == scored["right"]["classes"]
    with pytest.raises(DataError, match="holding the value 255"):
        reports.evaluate(None, root, predictions=tmp_path / "right")


def test_cli_scores_regions_of_label_map_pngs(tmp_path, label_maps):
    samples, truths, predictions = label_maps
    root = _label_map_folder(tmp_path, samples, truths)
    _write_predictions(tmp_path / "pred", samples, predictions)
    args = ["evaluate", "--predictions", str(tmp_path / "pred"), "--data", str(root), "--quiet"]
    result = CliRunner().invoke(cli, [*args, "--regions", "1,2,3;glioma=2"])
    assert result.exit_code == 0, result.output
    rows = [line.split()[0] for line in result.output.splitlines()]
    assert rows[1:4] == ["all", "meningioma+glioma+pituitary", "glioma"]
    bad = CliRunner().invoke(cli, [*args, "--regions", "1,5"])
    assert bad.exit_code != 0 and "holds the label 5" in bad.output


def test_regions_need_label_maps(tmp_path, figshare_512, label_maps):
    samples, _, predictions = label_maps
    _write_predictions(tmp_path / "pred", samples, [p > 0 for p in predictions])
    with pytest.raises(ValueError, match="regions and ignore_index are for label maps"):
        reports.evaluate(None, figshare_512, predictions=tmp_path / "pred", regions="1")
    assert not math.isnan(
        reports.evaluate(None, figshare_512, predictions=tmp_path / "pred")["dice_mean"]
    )
