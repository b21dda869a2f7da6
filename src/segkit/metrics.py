"""Thresholded segmentation metrics for training logs: Dice, IoU, precision and recall.

Each metric thresholds ``y_pred`` (foreground where ``y_pred > threshold``) and ``y_true`` (at
0.5), then either

* averages a score computed per image (``per_image=True``, the default), or
* pools true/false positive and negative counts over every image seen and scores them once
  (``per_image=False``), which weighs each image by its foreground size.

Images whose true and predicted masks are both empty have no overlap to measure. The ``empty``
policy decides what they count as in the per-image mean:

* ``empty="one"`` (default): a perfect 1.0, as the smoothed Dice of the notebook gives and the
  usual Kaggle scoring does. On data with many empty slices this raises the mean.
* ``empty="skip"``: left out of the mean, which then describes only images with something in
  them (true or predicted).

An image where exactly one of the two masks is empty scores 0 on every metric here. When there
is nothing to report (no image counted, or pooled counts with no foreground at all under
``"skip"``) ``result()`` returns 0.0, as Keras metrics do, rather than NaN. With more than one
channel, each channel is thresholded and the channels' counts are pooled within the image;
``include_background=False`` leaves channel 0 (the background class of a multi-class model)
out, so that the background, which covers most pixels, does not lift the score.

All computation is ``keras.ops``, so the metrics run on JAX, PyTorch and TensorFlow.
"""

from __future__ import annotations

import keras
from keras import ops

__all__ = ["Dice", "IoU", "Precision", "Recall"]

EMPTY_POLICIES = ("one", "skip")


class _OverlapMetric(keras.metrics.Metric):
    """Accumulates per-image scores and pooled counts; subclasses define `ratio` and the
    name a metric takes when none is given (`default_name`)."""

    default_name: str

    def __init__(
        self,
        threshold: float = 0.5,
        per_image: bool = True,
        empty: str = "one",
        name: str | None = None,
        dtype=None,
        include_background: bool = True,
    ):
        super().__init__(name=name or self.default_name, dtype=dtype)
        self.include_background = bool(include_background)
        if empty not in EMPTY_POLICIES:
            raise ValueError(f"empty must be one of {EMPTY_POLICIES}, got {empty!r}")
        self.threshold = float(threshold)
        self.per_image = bool(per_image)
        self.empty = empty
        # Pooled counts, and the running sum and count of per-image scores.
        self.true_positives = self._zero("true_positives")
        self.false_positives = self._zero("false_positives")
        self.false_negatives = self._zero("false_negatives")
        self.score_sum = self._zero("score_sum")
        self.image_count = self._zero("image_count")

    def _zero(self, name: str):
        return self.add_variable(shape=(), initializer="zeros", dtype=self.dtype, name=name)

    def ratio(self, true_positives, false_positives, false_negatives):
        """Numerator and denominator of the score; subclasses define them."""
        raise NotImplementedError

    def _score(self, true_positives, false_positives, false_negatives):
        """The score, with the ``empty`` value where both masks are empty and 0 for 0/0."""
        numerator, denominator = self.ratio(true_positives, false_positives, false_negatives)
        score = ops.where(denominator > 0, numerator / ops.maximum(denominator, 1e-12), 0.0)
        both_empty = (true_positives + false_positives + false_negatives) == 0
        return ops.where(both_empty, 1.0, score), both_empty

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Add a batch.

        Args:
            y_true: ``(batch, H, W[, C])`` masks (foreground where above 0.5), or an integer
                label map ``(batch, H, W[, 1])`` when ``y_pred`` has one channel per class.
            y_pred: probabilities of the same shape.
            sample_weight: optional ``(batch,)`` weight of each image.
        """
        y_pred = ops.convert_to_tensor(y_pred)
        y_true = ops.convert_to_tensor(y_true)
        channels = y_pred.shape[-1]
        if channels is not None and channels > 1 and y_true.shape[-1] in (1, None):
            # An integer label map against per-class probabilities: one channel per class.
            labels = ops.cast(ops.reshape(y_true, ops.shape(y_pred)[:-1]), "int32")
            y_true = ops.one_hot(labels, channels)
        y_true = ops.reshape(y_true, ops.shape(y_pred))
        if not self.include_background and channels is not None and channels > 1:
            y_true, y_pred = y_true[..., 1:], y_pred[..., 1:]
        predicted = ops.cast(y_pred > self.threshold, self.dtype)
        actual = ops.cast(y_true > 0.5, self.dtype)
        axes = tuple(range(1, len(y_pred.shape)))
        true_positives = ops.sum(actual * predicted, axis=axes)
        false_positives = ops.sum((1.0 - actual) * predicted, axis=axes)
        false_negatives = ops.sum(actual * (1.0 - predicted), axis=axes)

        if sample_weight is None:
            weights = ops.ones_like(true_positives)
        else:
            weights = ops.reshape(ops.cast(sample_weight, self.dtype), ops.shape(true_positives))
        self.true_positives.assign_add(ops.sum(weights * true_positives))
        self.false_positives.assign_add(ops.sum(weights * false_positives))
        self.false_negatives.assign_add(ops.sum(weights * false_negatives))

        scores, both_empty = self._score(true_positives, false_positives, false_negatives)
        if self.empty == "skip":
            weights = weights * (1.0 - ops.cast(both_empty, self.dtype))
        self.score_sum.assign_add(ops.sum(weights * scores))
        self.image_count.assign_add(ops.sum(weights))

    def result(self):
        if self.per_image:
            return ops.where(
                self.image_count > 0, self.score_sum / ops.maximum(self.image_count, 1e-12), 0.0
            )
        score, both_empty = self._score(
            self.true_positives, self.false_positives, self.false_negatives
        )
        if self.empty == "skip":
            return ops.where(both_empty, 0.0, score)
        return score

    def get_config(self):
        config = super().get_config()
        config.update(
            threshold=self.threshold,
            per_image=self.per_image,
            empty=self.empty,
            include_background=self.include_background,
        )
        return config


@keras.saving.register_keras_serializable(package="segkit")
class Dice(_OverlapMetric):
    """Dice ``2*TP / (2*TP + FP + FN)`` of thresholded masks.

    Args:
        threshold: ``y_pred`` above it is foreground.
        per_image: mean of per-image Dice (True) or Dice of the pooled counts (False).
        empty: ``"one"`` counts images with both masks empty as 1.0, ``"skip"`` leaves them out.
        name: name of the metric; by default its class's `default_name` ("dice" here).
        dtype: dtype of the state.
        include_background: count channel 0 of a multi-channel ``y_pred``; False for the
            foreground classes of a multi-class model only.
    """

    default_name = "dice"

    def ratio(self, true_positives, false_positives, false_negatives):
        return 2.0 * true_positives, 2.0 * true_positives + false_positives + false_negatives


@keras.saving.register_keras_serializable(package="segkit")
class IoU(_OverlapMetric):
    """Intersection over union ``TP / (TP + FP + FN)``; arguments as `Dice`."""

    default_name = "iou"

    def ratio(self, true_positives, false_positives, false_negatives):
        return true_positives, true_positives + false_positives + false_negatives


@keras.saving.register_keras_serializable(package="segkit")
class Precision(_OverlapMetric):
    """Precision ``TP / (TP + FP)``: the share of predicted pixels that are right.

    Arguments as `Dice`; an image with an empty prediction but a non-empty truth
    scores 0.
    """

    default_name = "precision"

    def ratio(self, true_positives, false_positives, false_negatives):
        return true_positives, true_positives + false_positives


@keras.saving.register_keras_serializable(package="segkit")
class Recall(_OverlapMetric):
    """Recall (sensitivity) ``TP / (TP + FN)``: the share of true pixels found.

    Arguments as `Dice`; an image with an empty truth but a non-empty prediction
    scores 0.
    """

    default_name = "recall"

    def ratio(self, true_positives, false_positives, false_negatives):
        return true_positives, true_positives + false_negatives
