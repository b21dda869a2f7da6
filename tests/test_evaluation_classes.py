"""Per-class scores of label maps: against an independent reference, and in reports."""

from __future__ import annotations

import json
import math

import imageio.v3 as iio
import numpy as np
import pytest
from click.testing import CliRunner
from scipy import ndimage
from scipy.spatial.distance import cdist

from segkit import data, evaluation, reports
from segkit.cli import cli

TUMOUR_TYPES = ("background", "meningioma", "glioma", "pituitary")


def _surface_points(mask: np.ndarray) -> np.ndarray:
    """Foreground pixels with a 4-neighbour outside the mask (the image edge counts as outside),
    written out neighbour by neighbour."""
    padded = np.pad(mask, 1)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:] & mask
    return np.argwhere(mask & ~inner)


def _reference(pred: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    """Dice from pixel counts and HD95 from all pairwise surface distances (MONAI's definition)."""
    tp = np.sum(pred & true)
    dice = 2 * tp / (pred.sum() + true.sum())
    distances = cdist(_surface_points(pred), _surface_points(true))
    hd95 = max(np.percentile(distances.min(axis=1), 95), np.percentile(distances.min(axis=0), 95))
    return float(dice), float(hd95)


@pytest.fixture(scope="module")
def label_maps(figshare_512):
    """Real Figshare label maps (background + tumour type) and imperfect predictions of them:
    grown by two pixels, shifted, and every third one given the wrong tumour type."""
    samples = data.find_samples(figshare_512)
    truths, predictions = [], []
    for index, sample in enumerate(samples):
        true = data.read_mask(sample, num_classes=4, class_source="sample-label")
        grown = ndimage.binary_dilation(true > 0, iterations=2)
        grown = np.roll(grown, (3, -2), axis=(0, 1))
        label = sample.label if index % 3 else sample.label % 3 + 1
        truths.append(true)
        predictions.append((grown * label).astype(np.uint8))
    return samples, truths, predictions


def test_per_class_dice_and_hd95_match_the_reference(label_maps):
    samples, truths, predictions = label_maps
    checked = 0
    for true, pred in zip(truths, predictions, strict=True):
        scores = evaluation.score_classes(pred, true, TUMOUR_TYPES)
        assert list(scores) == list(TUMOUR_TYPES[1:])  # background not scored
        for k, name in enumerate(TUMOUR_TYPES[1:], start=1):
            in_pred, in_true = (pred == k), (true == k)
            if not in_pred.any() and not in_true.any():
                assert math.isnan(scores[name]["dice"])  # left out of the class's mean
            elif not in_pred.any() or not in_true.any():
                assert scores[name]["dice"] == 0 and math.isnan(scores[name]["hd95"])
            else:
                dice, hd95 = _reference(in_pred, in_true)
                assert scores[name]["dice"] == pytest.approx(dice, abs=1e-5)
                assert scores[name]["hd95"] == pytest.approx(hd95, abs=1e-5)
                checked += 1
    assert checked >= 10


def test_summary_leaves_out_images_without_the_class(label_maps):
    samples, truths, predictions = label_maps
    per_image = [evaluation.score_classes(p, t, TUMOUR_TYPES) for p, t in zip(predictions, truths)]
    summary = evaluation.summarize_classes(per_image)
    for k, name in enumerate(TUMOUR_TYPES[1:], start=1):
        held = [
            s for s, t, p in zip(per_image, truths, predictions) if (t == k).any() or (p == k).any()
        ]
        assert summary[name]["n_images"] == len(held)
        expected = np.mean([s[name]["dice"] for s in held])
        assert summary[name]["dice_mean"] == pytest.approx(expected, abs=1e-12)


def test_a_value_beyond_the_classes_is_refused():
    with pytest.raises(ValueError, match="pred holds the value 4; classes are 0..3"):
        evaluation.score_classes(np.full((4, 4), 4), np.zeros((4, 4)), TUMOUR_TYPES)


def _write_predictions(folder, samples, predictions):
    folder.mkdir()
    for sample, pred in zip(samples, predictions, strict=True):
        iio.imwrite(folder / f"{sample.key}_mask.png", pred)


def test_report_of_label_map_predictions(tmp_path, figshare_512, label_maps):
    samples, truths, predictions = label_maps
    _write_predictions(tmp_path / "pred", samples, predictions)
    report = reports.evaluate(
        None,
        figshare_512,
        tmp_path / "r.json",
        predictions=tmp_path / "pred",
        classes="tumour-type",
    )
    assert list(report["classes"]) == list(TUMOUR_TYPES[1:])
    assert report["include_background"] is False
    class_means = [c["dice_mean"] for c in report["classes"].values()]
    assert report["dice_mean"] == pytest.approx(np.mean(class_means))
    entry = report["images"][0]
    assert set(entry["classes"]) == set(TUMOUR_TYPES[1:])
    assert set(entry["classes"]["glioma"]) == {"dice", "iou", "hd95"}
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["classes"]["glioma"]["n_images"] == report["classes"]["glioma"]["n_images"]
    table = reports.format_table(report).splitlines()
    assert [line.split()[0] for line in table[2:5]] == list(TUMOUR_TYPES[1:])
    assert table[5].startswith("glioma slices")  # labels' rows say they are the slices of a type


def test_true_label_maps_score_one_and_count_each_class(tmp_path, figshare_512, label_maps):
    samples, truths, _ = label_maps
    _write_predictions(tmp_path / "pred", samples, truths)
    report = reports.evaluate(
        None, figshare_512, predictions=tmp_path / "pred", num_classes=4, classes="tumour-type"
    )
    counts = {name: sum(s.label_name == name for s in samples) for name in TUMOUR_TYPES[1:]}
    assert {k: v["n_images"] for k, v in report["classes"].items()} == counts
    assert report["dice_mean"] == 1.0 and report["hd95_mean"] == 0.0


def test_cli_scores_label_map_pngs_with_num_classes(tmp_path, figshare_512, label_maps):
    """Label maps with values up to 3 once failed as 'pred must be binary'."""
    samples, truths, predictions = label_maps
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for sample, true in zip(samples, truths, strict=True):
        iio.imwrite(root / "images" / f"{sample.key}.png", iio.imread(sample.image))
        iio.imwrite(root / "masks" / f"{sample.key}_mask.png", true)
    _write_predictions(tmp_path / "pred", samples, predictions)
    args = ["evaluate", "--predictions", str(tmp_path / "pred"), "--data", str(root)]
    result = CliRunner().invoke(cli, [*args, "--num-classes", "4", "--quiet"])
    assert result.exit_code == 0, result.output
    rows = [line.split()[0] for line in result.output.splitlines()]
    assert rows[1:5] == ["all", "class_1", "class_2", "class_3"]
    binary = CliRunner().invoke(cli, [*args, "--quiet"])
    assert binary.exit_code != 0 and "not binary" in binary.output
