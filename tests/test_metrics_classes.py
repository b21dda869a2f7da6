"""Keras metrics per class and per region on real Figshare label maps, against numpy, on
whichever Keras backend is active."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from segkit import data, losses, masks, metrics
from segkit.resize import resize_labels

pytestmark = pytest.mark.backend

TUMOUR_TYPES = ["background", "meningioma", "glioma", "pituitary"]
REGIONS = [[1, 2, 3], [2]]
REGION_NAMES = ["tumour", "glioma"]


@pytest.fixture(scope="module")
def label_maps(figshare_256):
    """Nine real slices, three of each tumour type, as 64x64 label maps (background + type)."""
    samples = data.find_samples(figshare_256)
    chosen = [s for label in (1, 2, 3) for s in [x for x in samples if x.label == label][:3]]
    return np.stack(
        [
            resize_labels(data.read_mask(s, num_classes=4, class_source="sample-label"), (64, 64))
            for s in chosen
        ]
    )


@pytest.fixture(scope="module")
def softmax(label_maps):
    """Imperfect softmax outputs: every fourth image called the next tumour type, noise that
    never changes the most probable class, and no probability above 0.5 anywhere."""
    rng = np.random.default_rng(0)
    called = label_maps.copy()
    called[::4] = np.where(called[::4] > 0, called[::4] % 3 + 1, 0)
    scores = 1.2 + 0.6 * np.eye(4)[called] + 0.5 * rng.random((*called.shape, 4))
    probs = scores / scores.sum(-1, keepdims=True)
    assert probs.max() < 0.5
    return probs.astype(np.float32)


def numpy_dice(pred: np.ndarray, true: np.ndarray) -> float:
    """Per-image Dice averaged over the images holding the class in either mask (NaN if none)."""
    scores = [
        2 * np.sum(p & t) / (p.sum() + t.sum()) for p, t in zip(pred, true) if p.any() or t.any()
    ]
    return float(np.mean(scores)) if scores else float("nan")


def logged(metric_list, y_true, y_pred, batch=4):
    """Each metric's result after the batches of ``batch`` images, by name."""
    for start in range(0, len(y_true), batch):
        for metric in metric_list:
            metric.update_state(y_true[start : start + batch], y_pred[start : start + batch])
    return {m.name: float(keras.ops.convert_to_numpy(m.result())) for m in metric_list}


def test_binary_task_logs_what_it_always_did():
    dice, iou = metrics.for_task("binary")
    assert (dice.name, iou.name) == ("dice", "iou")
    assert dice.get_config() == metrics.Dice().get_config()


def test_names_follow_the_classes_and_regions():
    names = [m.name for m in metrics.for_task("multiclass", TUMOUR_TYPES)]
    assert names == ["dice", "iou", "dice_meningioma", "dice_glioma", "dice_pituitary"]
    regions = metrics.for_task("multilabel", ["whole tumour", "core"], [[1, 2, 3], [1, 3]])
    assert [m.name for m in regions] == ["dice", "iou", "dice_whole_tumour", "dice_core"]


def test_per_class_dice_of_the_argmax_matches_numpy(label_maps, softmax):
    scores = logged(metrics.for_task("multiclass", TUMOUR_TYPES), label_maps[..., None], softmax)
    predicted = softmax.argmax(-1)
    per_class = {
        name: numpy_dice(predicted == k, label_maps == k)
        for k, name in enumerate(TUMOUR_TYPES[1:], start=1)
    }
    for name, expected in per_class.items():
        assert scores[f"dice_{name}"] == pytest.approx(expected, abs=1e-5)
    assert scores["dice"] == pytest.approx(np.mean(list(per_class.values())), abs=1e-5)
    assert 0.2 < scores["dice"] < 0.95  # neither nothing nor everything found
    # Thresholding the softmax at 0.5 would have found no class at all.
    thresholded = metrics.Dice(mode="multilabel", classes=[1, 2, 3], empty="skip")
    assert logged([thresholded], np.eye(4)[label_maps], softmax)["dice"] == 0.0


def test_per_region_dice_matches_numpy(label_maps, softmax):
    region_probs = np.stack([1 - softmax[..., 0], softmax[..., 2]], axis=-1)
    scores = logged(metrics.for_task("multilabel", REGION_NAMES, REGIONS), label_maps, region_probs)
    true = masks.regions_from_labels(label_maps, REGIONS).astype(bool)
    predicted = region_probs > 0.5
    per_region = [numpy_dice(predicted[..., r], true[..., r]) for r in range(2)]
    assert scores["dice_tumour"] == pytest.approx(per_region[0], abs=1e-5)
    assert scores["dice_glioma"] == pytest.approx(per_region[1], abs=1e-5)
    assert scores["dice"] == pytest.approx(np.mean(per_region), abs=1e-5)


def test_unlabelled_pixels_are_left_out(label_maps, softmax):
    marked = label_maps.copy()
    marked[:, :20, :20] = 255
    elsewhere = np.ones(marked.shape, bool)
    elsewhere[:, :20, :20] = False
    predicted = softmax.argmax(-1)
    found = logged(metrics.for_task("multiclass", TUMOUR_TYPES, ignore_index=255), marked, softmax)
    for k, name in enumerate(TUMOUR_TYPES[1:], start=1):
        expected = numpy_dice((predicted == k) & elsewhere, (label_maps == k) & elsewhere)
        assert found[f"dice_{name}"] == pytest.approx(expected, abs=1e-5)


def test_pooled_and_per_image_results_leave_out_classes_never_seen(label_maps, softmax):
    held = label_maps[:3]  # meningioma slices only: glioma and pituitary absent
    only_meningioma = np.where(held > 0, 1, 0)
    probs = np.eye(4, dtype=np.float32)[only_meningioma]
    for per_image in (True, False):
        dice = metrics.Dice(classes=[1, 2, 3], empty="skip", per_image=per_image)
        assert logged([dice], held, probs)["dice"] == pytest.approx(1.0)


def test_logged_by_keras_during_fit(label_maps):
    """A region model fitted on label maps logs a validation Dice per region and their mean."""
    rng = np.random.default_rng(1)
    images = rng.random((*label_maps.shape, 1)).astype(np.float32)
    model = keras.Sequential(
        [keras.Input((64, 64, 1)), keras.layers.Conv2D(2, 1, activation="sigmoid")]
    )
    model.compile(
        optimizer="adam",
        loss=losses.BCEDiceLoss(mode="multilabel", regions=REGIONS),
        metrics=metrics.for_task("multilabel", REGION_NAMES, REGIONS),
    )
    targets = label_maps[..., None].astype(np.float32)
    history = model.fit(
        images, targets, validation_data=(images, targets), epochs=1, batch_size=3, verbose=0
    )
    assert {"val_dice", "val_dice_tumour", "val_dice_glioma"} <= set(history.history)
    assert all(0.0 <= history.history[k][0] <= 1.0 for k in ("val_dice", "val_dice_glioma"))


@pytest.mark.parametrize(
    "metric",
    [
        metrics.Dice(mode="multiclass", classes=[1, 2], empty="skip", ignore_index=255),
        metrics.IoU(mode="multilabel", regions=REGIONS, classes=[1]),
    ],
    ids=lambda metric: metric.name,
)
def test_class_metrics_round_trip(metric):
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert type(restored) is type(metric)
    assert restored.get_config() == metric.get_config()
