"""Segmentation metrics for training logs: Dice, IoU, precision and recall.

How a prediction becomes a mask depends on the ``mode``, as in `segkit.losses`:

* ``"binary"``: one channel, foreground where ``y_pred > threshold``;
* ``"multiclass"``: one softmax channel per class, each pixel taking the most probable class
  (argmax), so that every pixel is predicted as exactly one class;
* ``"multilabel"``: channels thresholded one by one (overlapping regions);
* None (the default): multiclass for a label map ``y_true`` against several channels, else
  every value of ``y_pred`` thresholded (masks of any shape, with or without a channel axis).

``y_true`` is read by `segkit.losses.prepare_targets`: masks (true above 0.5), or an integer
label map where ``y_pred`` has a channel per class, or, with ``regions``, a label map turned
into one channel per region. Pixels whose label is ``ignore_index`` are left out.

A metric then either

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
``"skip"``) ``result()`` returns 0.0, as Keras metrics do, rather than NaN.

With several channels, ``classes`` picks the channels scored, each on its own: the result is
the mean of their scores (a class that no image held, under ``"skip"``, is left out of that
mean). Without ``classes``, the channels' counts are pooled within each image, as if they were
one mask; ``include_background=False`` then leaves channel 0 out. `for_task` gives the metrics
`segkit.train` logs for a task: a Dice per class (or region) named after it, and ``dice``, their
mean over the foreground classes.

All computation is ``keras.ops``, so the metrics run on JAX, PyTorch and TensorFlow.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import keras
from keras import ops

from segkit.losses import prepare_targets

__all__ = ["Dice", "IoU", "Precision", "Recall", "for_task"]

EMPTY_POLICIES = ("one", "skip")
MODES = ("binary", "multiclass", "multilabel")


class _OverlapMetric(keras.metrics.Metric):
    """Accumulates per-image scores and pooled counts (one of each per scored class);
    subclasses define `ratio` and the name a metric takes when none is given
    (`default_name`)."""

    default_name: str

    def __init__(
        self,
        threshold: float = 0.5,
        per_image: bool = True,
        empty: str = "one",
        name: str | None = None,
        dtype=None,
        include_background: bool = True,
        mode: str | None = None,
        classes: Sequence[int] | None = None,
        regions: Sequence[Sequence[int]] | None = None,
        ignore_index: int | None = None,
    ):
        super().__init__(name=name or self.default_name, dtype=dtype)
        self.include_background = bool(include_background)
        if empty not in EMPTY_POLICIES:
            raise ValueError(f"empty must be one of {EMPTY_POLICIES}, got {empty!r}")
        if mode is not None and mode not in MODES:
            raise ValueError(f"mode must be None or one of {MODES}, got {mode!r}")
        if classes is not None and (not classes or min(classes) < 0):
            raise ValueError(f"classes must be channel indices, got {classes!r}")
        self.threshold = float(threshold)
        self.per_image = bool(per_image)
        self.empty = empty
        self.mode = mode
        self.classes = None if classes is None else tuple(int(c) for c in classes)
        self.regions = None if regions is None else tuple(tuple(r) for r in regions)
        self.ignore_index = ignore_index
        # Pooled counts, and the running sum and count of per-image scores: one per scored
        # class, or a single one for channels pooled together.
        shape = () if self.classes is None else (len(self.classes),)
        self.true_positives = self._zero("true_positives", shape)
        self.false_positives = self._zero("false_positives", shape)
        self.false_negatives = self._zero("false_negatives", shape)
        self.score_sum = self._zero("score_sum", shape)
        self.image_count = self._zero("image_count", shape)

    def _zero(self, name: str, shape: tuple):
        return self.add_variable(shape=shape, initializer="zeros", dtype=self.dtype, name=name)

    def ratio(self, true_positives, false_positives, false_negatives):
        """Numerator and denominator of the score; subclasses define them."""
        raise NotImplementedError

    def _score(self, true_positives, false_positives, false_negatives):
        """The score, with 1.0 where both masks are empty and 0 for 0/0."""
        numerator, denominator = self.ratio(true_positives, false_positives, false_negatives)
        score = ops.where(denominator > 0, numerator / ops.maximum(denominator, 1e-12), 0.0)
        both_empty = (true_positives + false_positives + false_negatives) == 0
        return ops.where(both_empty, 1.0, score), both_empty

    def _masks(self, y_true, y_pred):
        """Predicted and true 0/1 masks, one channel per class, ignored pixels 0 in both."""
        channels = y_pred.shape[-1]
        mode = self.mode
        if mode is None:  # a label map against a channel per class is multiclass
            y_true = ops.convert_to_tensor(y_true)
            label_map = len(y_true.shape) == len(y_pred.shape) - 1 or y_true.shape[-1] == 1
            mode = "multiclass" if channels and channels > 1 and label_map else "multilabel"
        y_true, y_pred, valid = prepare_targets(
            y_true, y_pred, mode, self.regions, self.ignore_index
        )
        if mode == "multiclass":  # each pixel is the one class it is most likely to be
            predicted = ops.one_hot(ops.argmax(y_pred, axis=-1), channels, dtype=self.dtype)
        else:
            predicted = ops.cast(y_pred > self.threshold, self.dtype)
        actual = ops.cast(y_true > 0.5, self.dtype)
        if valid is not None:
            valid = ops.cast(valid, self.dtype)
            predicted, actual = predicted * valid, actual * valid
        return actual, predicted

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Add a batch.

        Args:
            y_true: ``(batch, H, W[, C])`` masks (foreground where above 0.5), or an integer
                label map ``(batch, H, W[, 1])`` when ``y_pred`` has one channel per class or
                region (see the module docstring).
            y_pred: probabilities, ``(batch, H, W, C)``.
            sample_weight: optional ``(batch,)`` weight of each image.
        """
        y_pred = ops.convert_to_tensor(y_pred)
        actual, predicted = self._masks(y_true, y_pred)
        channels = y_pred.shape[-1]
        if self.classes is not None:
            actual = ops.take(actual, list(self.classes), axis=-1)
            predicted = ops.take(predicted, list(self.classes), axis=-1)
        elif not self.include_background and channels is not None and channels > 1:
            actual, predicted = actual[..., 1:], predicted[..., 1:]
        # Sum over the pixels: (batch, classes), or (batch,) with the channels pooled.
        axes = tuple(range(1, len(y_pred.shape) - (self.classes is not None)))
        true_positives = ops.sum(actual * predicted, axis=axes)
        false_positives = ops.sum((1.0 - actual) * predicted, axis=axes)
        false_negatives = ops.sum(actual * (1.0 - predicted), axis=axes)

        if sample_weight is None:
            weights = ops.ones_like(true_positives)
        else:
            weights = ops.cast(ops.reshape(sample_weight, (-1,)), self.dtype)
            weights = ops.broadcast_to(
                ops.reshape(weights, (-1,) + (1,) * (len(true_positives.shape) - 1)),
                ops.shape(true_positives),
            )
        self.true_positives.assign_add(ops.sum(weights * true_positives, axis=0))
        self.false_positives.assign_add(ops.sum(weights * false_positives, axis=0))
        self.false_negatives.assign_add(ops.sum(weights * false_negatives, axis=0))

        scores, both_empty = self._score(true_positives, false_positives, false_negatives)
        if self.empty == "skip":
            weights = weights * (1.0 - ops.cast(both_empty, self.dtype))
        self.score_sum.assign_add(ops.sum(weights * scores, axis=0))
        self.image_count.assign_add(ops.sum(weights, axis=0))

    def result(self):
        if self.per_image:
            counted = self.image_count > 0
            scores = self.score_sum / ops.maximum(self.image_count, 1e-12)
        else:
            scores, both_empty = self._score(
                self.true_positives, self.false_positives, self.false_negatives
            )
            counted = ops.logical_not(both_empty) if self.empty == "skip" else scores >= 0
        # The mean over the classes with something to score; 0.0 when none has.
        counted = ops.cast(counted, self.dtype)
        total = ops.sum(counted)
        return ops.where(total > 0, ops.sum(scores * counted) / ops.maximum(total, 1.0), 0.0)

    def get_config(self):
        config = super().get_config()
        config.update(
            threshold=self.threshold,
            per_image=self.per_image,
            empty=self.empty,
            include_background=self.include_background,
            mode=self.mode,
            classes=None if self.classes is None else list(self.classes),
            regions=None if self.regions is None else [list(r) for r in self.regions],
            ignore_index=self.ignore_index,
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
        include_background: without ``classes``: count channel 0 of a multi-channel
            ``y_pred``; False for the foreground classes of a multi-class model only.
        mode: ``"binary"``, ``"multiclass"`` (argmax), ``"multilabel"`` (each channel
            thresholded), or None: multiclass for a label map against several channels, else
            thresholded.
        classes: the channels to score, each on its own; the result is their mean. None pools
            the channels' counts within each image.
        regions: multilabel mode: the labels of each channel's region; ``y_true`` is then a
            label map (see `segkit.losses.prepare_targets`).
        ignore_index: a label of ``y_true`` (e.g. 255) whose pixels are left out.
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


def for_task(
    mode: str = "binary",
    names: Sequence[str] | None = None,
    regions: Sequence[Sequence[int]] | None = None,
    ignore_index: int | None = None,
) -> list[keras.metrics.Metric]:
    """The metrics a run of a task logs: ``dice`` and ``iou``, and a Dice per class or region.

    * binary: ``Dice()`` and ``IoU()``, as segkit has always logged them;
    * multiclass (``names`` = the classes, background first): each pixel's class is the
      argmax; ``dice_<class>`` per foreground class, and ``dice`` and ``iou`` the mean over
      the foreground classes, each class over the images that hold it in truth or
      prediction (``empty="skip"``, as `segkit.evaluation.score_classes` scores them);
    * multilabel (``names`` = one per channel, e.g. region names; ``regions`` their labels
      when ``y_true`` is a label map): each channel thresholded; ``dice_<name>`` per channel
      and ``dice`` and ``iou`` the mean over all of them.

    ``dice`` (``val_dice`` in the logs) is what early stopping and ``best.keras`` watch. A
    name is written in the metric's name in lower case with ``_`` for anything but letters and
    digits: ``dice_whole_tumour``.

    Args:
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        names: the class names (multiclass) or channel names (multilabel).
        regions: multilabel: the labels of each channel's region.
        ignore_index: a label of ``y_true`` whose pixels are left out.

    Raises:
        ValueError: an unknown mode, or names missing or not one per class or region.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "binary":
        return [Dice(ignore_index=ignore_index), IoU(ignore_index=ignore_index)]
    names = list(names or [])
    if mode == "multiclass" and len(names) < 2:
        raise ValueError(f"multiclass metrics need the class names, background first; got {names}")
    if mode == "multilabel" and (not names or (regions is not None and len(regions) != len(names))):
        raise ValueError(f"multilabel metrics need a name per channel (and region); got {names}")
    first = 1 if mode == "multiclass" else 0
    common = {"mode": mode, "empty": "skip", "regions": regions, "ignore_index": ignore_index}
    scored = list(range(first, len(names)))
    result = [
        Dice(classes=scored, name="dice", **common),
        IoU(classes=scored, name="iou", **common),
    ]
    for index in scored:
        result.append(Dice(classes=[index], name=f"dice_{_metric_name(names[index])}", **common))
    return result


def _metric_name(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(name).lower()).strip("_") or "class"
