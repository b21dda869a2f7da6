"""segkit.metrics against numpy, on whichever Keras backend is active."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from segkit import metrics

pytestmark = pytest.mark.backend

TOL = {"rtol": 1e-5, "atol": 1e-6}
METRICS = [metrics.Dice, metrics.IoU, metrics.Precision, metrics.Recall]


def numpy_counts(y_true, y_pred, threshold=0.5):
    """Per-image true positives, false positives and false negatives."""
    actual = y_true.reshape(len(y_true), -1) > 0.5
    predicted = y_pred.reshape(len(y_pred), -1) > threshold
    return (
        (actual & predicted).sum(1),
        (~actual & predicted).sum(1),
        (actual & ~predicted).sum(1),
    )


RATIOS = {
    "dice": lambda tp, fp, fn: (2 * tp, 2 * tp + fp + fn),
    "iou": lambda tp, fp, fn: (tp, tp + fp + fn),
    "precision": lambda tp, fp, fn: (tp, tp + fp),
    "recall": lambda tp, fp, fn: (tp, tp + fn),
}


def numpy_metric(name, y_true, y_pred, per_image, empty, threshold=0.5):
    tp, fp, fn = numpy_counts(y_true, y_pred, threshold)
    if not per_image:
        tp, fp, fn = tp.sum(keepdims=True), fp.sum(keepdims=True), fn.sum(keepdims=True)
    numerator, denominator = RATIOS[name](tp, fp, fn)
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = np.where(denominator > 0, numerator / denominator, 0.0)
    both_empty = tp + fp + fn == 0
    if empty == "one":
        return np.where(both_empty, 1.0, scores).mean()
    kept = scores[~both_empty]
    return kept.mean() if kept.size else 0.0


@pytest.fixture
def batches():
    """Two batches of 5x4 masks: overlapping, both empty, one empty each way."""
    rng = np.random.default_rng(3)
    y_true = (rng.random((6, 5, 4, 1)) > 0.5).astype(np.float32)
    y_pred = rng.random((6, 5, 4, 1)).astype(np.float32)
    y_true[1], y_pred[1] = 0, 0.1  # both empty
    y_true[2] = 0  # only the truth empty
    y_pred[3] = 0.2  # only the prediction empty
    return [(y_true[:3], y_pred[:3]), (y_true[3:], y_pred[3:])]


def result(metric):
    return float(keras.ops.convert_to_numpy(metric.result()))


@pytest.mark.parametrize("metric_class", METRICS, ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("per_image", [True, False])
@pytest.mark.parametrize("empty", ["one", "skip"])
def test_matches_numpy_across_batches(batches, metric_class, per_image, empty):
    metric = metric_class(per_image=per_image, empty=empty)
    for y_true, y_pred in batches:
        metric.update_state(y_true, y_pred)
    y_true = np.concatenate([b[0] for b in batches])
    y_pred = np.concatenate([b[1] for b in batches])
    expected = numpy_metric(metric.name, y_true, y_pred, per_image, empty)
    np.testing.assert_allclose(result(metric), expected, **TOL)


def test_empty_policy_worked_example():
    """One perfect image, one both-empty, one missed: the three policies differ."""
    y_true = np.zeros((3, 4, 4), np.float32)
    y_pred = np.zeros((3, 4, 4), np.float32)
    y_true[0, :2, :2] = y_pred[0, :2, :2] = 1  # 4 pixels, found exactly
    y_true[2, :3, :3] = 1  # 9 pixels, missed completely
    scores = {}
    for name, kwargs in {
        "one": {"empty": "one"},
        "skip": {"empty": "skip"},
        "pooled": {"per_image": False},
    }.items():
        dice = metrics.Dice(**kwargs)
        dice.update_state(y_true, y_pred)
        scores[name] = result(dice)
    np.testing.assert_allclose(
        [scores["one"], scores["skip"], scores["pooled"]], [2 / 3, 1 / 2, 8 / 17], **TOL
    )


def test_threshold_and_reset():
    y_true = np.array([[[1.0, 0.0]]])
    y_pred = np.array([[[0.4, 0.3]]])
    dice = metrics.Dice(threshold=0.35)
    dice.update_state(y_true, y_pred)
    np.testing.assert_allclose(result(dice), 1.0)
    dice.reset_state()
    assert result(dice) == 0.0
    dice.update_state(y_true, y_pred * 0.5)  # nothing above 0.35 any more
    np.testing.assert_allclose(result(dice), 0.0)


def test_nothing_counted_gives_zero():
    empty = np.zeros((2, 3, 3), np.float32)
    for per_image in (True, False):
        dice = metrics.Dice(per_image=per_image, empty="skip")
        dice.update_state(empty, empty)
        assert result(dice) == 0.0
        dice = metrics.Dice(per_image=per_image, empty="one")
        dice.update_state(empty, empty)
        assert result(dice) == 1.0


def test_sample_weight_weighs_images():
    y_true = np.ones((2, 2, 2), np.float32)
    y_pred = np.stack([np.ones((2, 2)), np.zeros((2, 2))]).astype(np.float32)
    dice = metrics.Dice()
    dice.update_state(y_true, y_pred, sample_weight=np.array([3.0, 1.0]))
    np.testing.assert_allclose(result(dice), 0.75, **TOL)


@pytest.mark.parametrize("metric_class", METRICS, ids=lambda cls: cls.__name__)
def test_serialization_round_trip(metric_class):
    metric = metric_class(threshold=0.3, per_image=False, empty="skip")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert type(restored) is metric_class
    assert restored.get_config() == metric.get_config()


def test_bad_empty_policy():
    with pytest.raises(ValueError, match="empty must be one of"):
        metrics.Dice(empty="zero")


def test_inside_model_fit():
    rng = np.random.default_rng(0)
    x = rng.random((4, 8, 8, 1)).astype(np.float32)
    y = (x > 0.5).astype(np.float32)
    model = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")]
    )
    model.compile(
        optimizer="adam",
        loss="binary_crossentropy",
        metrics=[metrics.Dice(), metrics.IoU(per_image=False), metrics.Recall()],
    )
    logs = model.evaluate(x, y, batch_size=2, verbose=0, return_dict=True)
    assert {"dice", "iou", "recall"} <= set(logs)
    assert all(0.0 <= logs[name] <= 1.0 for name in ("dice", "iou", "recall"))


@pytest.mark.parametrize("metric_class", [metrics.Dice, metrics.IoU])
def test_include_background_false_scores_foreground_classes_only(metric_class):
    labels = np.zeros((1, 8, 8, 1), np.float32)
    labels[0, :4, :4] = 1
    labels[0, 4:, 4:] = 2
    predicted = np.zeros((1, 8, 8), np.int64)
    predicted[0, :4, :4] = 1  # class 1 right, class 2 missed (called background)
    probs = np.eye(3, dtype=np.float32)[predicted]
    with_background = metric_class()
    with_background.update_state(labels, probs)
    foreground = metric_class(include_background=False)
    foreground.update_state(labels, probs)
    # Foreground: class 1 has 16 true positives, class 2 16 false negatives.
    expected = 2 * 16 / (2 * 16 + 16) if metric_class is metrics.Dice else 16 / 32
    assert float(foreground.result()) == pytest.approx(expected, abs=1e-6)
    assert float(with_background.result()) > float(foreground.result())
    config = metric_class.from_config(foreground.get_config()).get_config()
    assert config["include_background"] is False
