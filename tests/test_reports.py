"""Evaluation reports: keys, resolution, per-label breakdown, predictions made elsewhere."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

import segkit
from segkit.demo import sample_dir
from segkit.inference import predict
from segkit.reports import evaluate, format_table

REQUIRED = ("n_images", "dice_mean", "dice_pooled", "iou_mean", "hd95_mean", "images")


def test_perfect_predictions_score_one(tmp_path):
    predictions = tmp_path / "pred"
    shutil.copytree(sample_dir() / "masks", predictions)
    report = evaluate(None, sample_dir(), tmp_path / "report.json", predictions=predictions)
    assert set(REQUIRED) <= set(report)
    assert report["n_images"] == 6 and report["resolution"] == "original"
    assert report["dice_mean"] == pytest.approx(1.0) and report["dice_pooled"] == pytest.approx(1.0)
    assert report["hd95_mean"] == pytest.approx(0.0)
    assert set(report["by_label"]) == {"meningioma", "glioma", "pituitary"}
    assert json.loads((tmp_path / "report.json").read_text()) == report
    assert {"file", "dice", "iou", "hd95"} <= set(report["images"][0])


def test_predictions_named_like_images_are_resized_to_the_truth(tmp_path):
    """Masks named ``12.png`` at half size: scored after a nearest resize to the truth's size."""
    predictions = tmp_path / "pred"
    predictions.mkdir()
    for mask_path in (sample_dir() / "masks").glob("*_mask.png"):
        mask = Image.open(mask_path)
        small = mask.resize((mask.width // 2, mask.height // 2), Image.Resampling.NEAREST)
        small.save(predictions / mask_path.name.replace("_mask", ""))
    report = evaluate(None, sample_dir(), predictions=predictions)
    assert 0.9 < report["dice_mean"] < 1.0


def test_missing_predictions_are_listed(tmp_path):
    predictions = tmp_path / "pred"
    shutil.copytree(sample_dir() / "masks", predictions)
    (predictions / "955_mask.png").unlink()
    with pytest.raises(FileNotFoundError, match="lacks 955_mask.png"):
        evaluate(None, sample_dir(), predictions=predictions)


def test_model_or_predictions_not_both():
    with pytest.raises(ValueError, match="either a model or a predictions folder"):
        evaluate(None, sample_dir())


@pytest.mark.backend
def test_model_report_at_both_resolutions(tmp_path):
    model = segkit.models.get("unet", input_shape=(32, 32, 1), base_filters=4, depth=2)
    path = tmp_path / "tiny.keras"
    model.save(path)
    original = evaluate(path, sample_dir())
    small = evaluate(path, sample_dir(), at_model_size=True)
    assert original["resolution"] == "original" and small["resolution"] == "model"
    assert original["n_images"] == small["n_images"] == 6
    header, overall = format_table(original).splitlines()[:2]
    assert header.split()[:2] == ["images", "dice"]
    assert overall.split()[:3] == ["all", "6", f"{original['dice_mean']:.3f}"]
    # The model's report scores exactly the masks that predict writes.
    predict(path, [sample_dir() / "images"], tmp_path / "pred")
    from_files = evaluate(None, sample_dir(), predictions=tmp_path / "pred")
    assert [r["key"] for r in from_files["images"]] == [r["key"] for r in original["images"]]
    assert [r["dice"] for r in from_files["images"]] == [r["dice"] for r in original["images"]]


def test_a_manifest_subset_scores_only_that_part(tmp_path):
    from segkit import data

    data.Split(
        method="random",
        seed=0,
        fractions=(0.5, 0.0, 0.5),
        train=("172", "294", "770"),
        val=(),
        test=("955", "1076", "1944"),
    ).save(tmp_path / "split.json")
    predictions = tmp_path / "pred"
    shutil.copytree(sample_dir() / "masks", predictions)
    report = evaluate(
        None, sample_dir(), predictions=predictions, manifest=tmp_path / "split.json", subset="test"
    )
    assert sorted(r["key"] for r in report["images"]) == ["1076", "1944", "955"]
    np.testing.assert_allclose(report["dice_mean"], 1.0)
