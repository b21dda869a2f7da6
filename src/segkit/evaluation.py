"""Per-image evaluation for reports: overlap scores, surface distances and their summary.

```python
from segkit import evaluation
scores = [evaluation.score(pred, true, spacing=(0.5, 0.5)) for pred, true in pairs]
summary = evaluation.summarize(scores)   # summary["dice"]["mean"], summary["dice_pooled"], ...

# A volume: 3-D Dice, and distances in mm from its voxel size.
from segkit.data import volumes
scan = volumes.read_volume("case.nii.gz")
labels = volumes.read_labels("case_labels.nii.gz", scan)
predicted = volumes.read_labels("masks/case_mask.nii.gz", scan)
volume_scores = evaluation.score(predicted.array, labels.array, spacing=scan.spacing)
```

Masks are 2-D or 3-D. ``spacing`` is the pixel (voxel) size along each axis, or one number
for all; the default, None, is 1 along every axis, so distances are in pixels.

Surface distances follow MONAI's defaults (``compute_hausdorff_distance(percentile=95)`` and
``compute_average_surface_distance(symmetric=True)``): a mask's surface is its foreground minus
its erosion by the 4-connected (6 in 3-D) cross, and every surface pixel of one mask is measured
to the nearest surface pixel of the other with an exact Euclidean distance transform that honours
the pixel ``spacing``.

* ``hd95`` is the larger of the two directed 95th percentiles (pred to true, true to pred),
  with linear interpolation between ranks.
* ``assd`` is the mean over both directed sets together.

Empty masks follow one rule in `score`, `hd95` and `assd`, in 2-D and 3-D alike
(``empty="one"``, the default):

| case              | dice, iou, precision, recall | hd95, assd |
|-------------------|------------------------------|------------|
| both empty        | 1.0                          | 0.0        |
| only `pred` empty | 0.0                          | NaN        |
| only `true` empty | 0.0                          | NaN        |

With ``empty="skip"`` the both-empty row is NaN instead, so `summarize` leaves those
images out of means and medians and counts them under ``"nan"``. Bad input (masks, spacing,
``empty``) is an error whether or not the masks are empty. MONAI itself returns NaN for
both-empty and ``inf`` for one-empty distances; NaN is used here so one missed lesion cannot make
a mean infinite while the count of NaNs still shows it. ``specificity`` is NaN only when the
true mask covers the whole image and nothing is predicted outside it.

Label maps (several classes) are scored class by class with `score_classes`: each class is
the binary mask ``labels == k``, and for one image and one class

* absent from both truth and prediction: every score is NaN, so the class's means leave the
  image out (``n_images`` counts the images that hold the class in either);
* present in only one of them: Dice and IoU 0, distances NaN;

and background (class 0) is left out unless ``include_background=True``, as MONAI's
``DiceMetric(include_background=False)``: it covers most pixels and would lift any mean.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from segkit.masks import as_binary

__all__ = [
    "surface",
    "surface_distances",
    "hd95",
    "assd",
    "score",
    "summarize",
    "score_classes",
    "summarize_classes",
    "METRICS",
]

#: The per-image scores `summarize` describes, in report order.
METRICS = ("dice", "iou", "precision", "recall", "specificity", "hd95", "assd")

EMPTY_POLICIES = ("one", "skip")


def _check_pair(pred, true) -> tuple[np.ndarray, np.ndarray]:
    pred = as_binary(pred, "pred", ndims=(2, 3))
    true = as_binary(true, "true", ndims=(2, 3))
    if pred.shape != true.shape:
        raise ValueError(f"pred shape {pred.shape} differs from true shape {true.shape}")
    return pred, true


def _check_spacing(spacing, ndim: int) -> tuple[float, ...]:
    if spacing is None:  # unit spacing, whatever the number of axes
        return (1.0,) * ndim
    try:
        values = np.atleast_1d(np.asarray(spacing, dtype=float))
    except (TypeError, ValueError):
        raise ValueError(f"spacing must be numbers, got {spacing!r}") from None
    if values.size == 1:
        values = np.repeat(values, ndim)
    if values.shape != (ndim,) or not np.all(values > 0):
        raise ValueError(f"spacing must be {ndim} positive sizes (one per axis), got {spacing!r}")
    return tuple(values.tolist())


def surface(mask: np.ndarray) -> np.ndarray:
    """Foreground pixels with a background 4-neighbour (6 in 3-D); outside counts as background."""
    from scipy import ndimage  # here, not at the top: the command line starts without SciPy

    return mask & ~ndimage.binary_erosion(mask)


def surface_distances(pred, true, spacing=None) -> tuple[np.ndarray, np.ndarray]:
    """Distances from each surface pixel of one mask to the nearest surface pixel of the other.

    Args:
        pred: binary 2-D or 3-D mask.
        true: binary mask of the same shape.
        spacing: pixel size along each axis (e.g. mm), or one number for all; None for 1.

    Returns:
        ``(pred_to_true, true_to_pred)``: 1-D float arrays, one entry per surface pixel of
        ``pred`` and of ``true``. Both empty when either mask is empty.

    Raises:
        ValueError: masks not binary, of different shapes, or bad ``spacing``.
    """
    from scipy import ndimage  # here, not at the top: the command line starts without SciPy

    pred, true = _check_pair(pred, true)
    spacing = _check_spacing(spacing, pred.ndim)
    if not pred.any() or not true.any():
        return np.zeros(0), np.zeros(0)
    # Work inside the bounding box of both masks plus one pixel: same surfaces, smaller transform.
    box = ndimage.find_objects((pred | true).astype(np.uint8))[0]
    box = tuple(
        slice(max(s.start - 1, 0), min(s.stop + 1, size))
        for s, size in zip(box, pred.shape, strict=True)
    )
    pred_surface, true_surface = surface(pred[box]), surface(true[box])
    to_true = ndimage.distance_transform_edt(~true_surface, sampling=spacing)
    to_pred = ndimage.distance_transform_edt(~pred_surface, sampling=spacing)
    return to_true[pred_surface], to_pred[true_surface]


def _hd95(pred_to_true: np.ndarray, true_to_pred: np.ndarray) -> float:
    return float(max(np.percentile(pred_to_true, 95), np.percentile(true_to_pred, 95)))


def _assd(pred_to_true: np.ndarray, true_to_pred: np.ndarray) -> float:
    return float(np.concatenate((pred_to_true, true_to_pred)).mean())


def _check_empty(empty: str) -> None:
    if empty not in EMPTY_POLICIES:
        raise ValueError(f"empty must be one of {EMPTY_POLICIES}, got {empty!r}")


def _distance(function, pred, true, spacing, empty: str) -> float:
    _check_empty(empty)
    pred, true = _check_pair(pred, true)
    spacing = _check_spacing(spacing, pred.ndim)
    if not pred.any() and not true.any():
        return 0.0 if empty == "one" else float("nan")
    if not pred.any() or not true.any():
        return float("nan")
    return function(*surface_distances(pred, true, spacing))


def hd95(pred, true, spacing=None, empty: str = "one") -> float:
    """95th-percentile symmetric Hausdorff distance (MONAI's definition; see the module doc).

    Args:
        pred: binary 2-D or 3-D mask.
        true: binary mask of the same shape.
        spacing: pixel size along each axis, or one number for all; None for 1.
        empty: what two empty masks score, as in `score`: ``"one"`` (0.0) or ``"skip"`` (NaN).

    Returns:
        The distance in units of ``spacing``; for empty masks see the module doc's table.

    Raises:
        ValueError: masks not binary, of different shapes, or bad ``spacing`` or ``empty``.
    """
    return _distance(_hd95, pred, true, spacing, empty)


def assd(pred, true, spacing=None, empty: str = "one") -> float:
    """Average symmetric surface distance: mean over both directed surface-distance sets.

    Args:
        pred: binary 2-D or 3-D mask.
        true: binary mask of the same shape.
        spacing: pixel size along each axis, or one number for all; None for 1.
        empty: what two empty masks score, as in `score`: ``"one"`` (0.0) or ``"skip"`` (NaN).

    Returns:
        The distance in units of ``spacing``; for empty masks see the module doc's table.

    Raises:
        ValueError: masks not binary, of different shapes, or bad ``spacing`` or ``empty``.
    """
    return _distance(_assd, pred, true, spacing, empty)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def score(pred, true, spacing=None, empty: str = "one") -> dict[str, float]:
    """Every per-image score of one predicted mask against its true mask.

    Args:
        pred: binary 2-D or 3-D predicted mask.
        true: binary true mask of the same shape.
        spacing: pixel size along each axis (e.g. mm), or one number for all; None for 1.
            Only the distances use it.
        empty: what two empty masks score: ``"one"`` (dice, iou, precision, recall 1.0 and
            distances 0.0) or ``"skip"`` (all NaN, left out by `summarize`).

    Returns:
        ``dice``, ``iou``, ``precision``, ``recall``, ``specificity``, ``hd95``, ``assd`` and
        the pixel counts ``tp``, ``fp``, ``fn``, ``tn`` (as floats). See the module docstring
        for the empty-mask table.

    Raises:
        ValueError: masks not binary or of different shapes, bad ``spacing`` or ``empty``.
    """
    _check_empty(empty)
    pred, true = _check_pair(pred, true)
    spacing = _check_spacing(spacing, pred.ndim)
    tp = float(np.count_nonzero(pred & true))
    fp = float(np.count_nonzero(pred & ~true))
    fn = float(np.count_nonzero(~pred & true))
    tn = float(pred.size) - tp - fp - fn
    counts = {"tp": tp, "fp": fp, "fn": fn, "tn": tn}
    specificity = tn / (tn + fp) if tn + fp else float("nan")

    if tp + fp + fn == 0:  # both masks empty
        perfect = 1.0 if empty == "one" else float("nan")
        distance = 0.0 if empty == "one" else float("nan")
        overlap = dict.fromkeys(("dice", "iou", "precision", "recall"), perfect)
        return {**overlap, "specificity": specificity, "hd95": distance, "assd": distance, **counts}

    if tp + fp == 0 or tp + fn == 0:  # exactly one mask empty: no surface to measure to
        hd, average = float("nan"), float("nan")
    else:
        pred_to_true, true_to_pred = surface_distances(pred, true, spacing)
        hd, average = _hd95(pred_to_true, true_to_pred), _assd(pred_to_true, true_to_pred)
    return {
        "dice": 2 * tp / (2 * tp + fp + fn),
        "iou": tp / (tp + fp + fn),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "specificity": specificity,
        "hd95": hd,
        "assd": average,
        **counts,
    }


def summarize(scores: Iterable[Mapping[str, float]]) -> dict:
    """Describe a list of `score` results, ignoring NaN.

    Args:
        scores: one dict per image, as returned by `score`.

    Returns:
        ``{"images": n, "dice_pooled": ..., "iou_pooled": ..., "dice": {...}, ...}`` where each
        metric of `METRICS` maps to ``{"mean", "median", "std", "nan"}``: NaN-ignoring
        mean, median and population standard deviation (NaN when every value is NaN) and the
        number of NaN values. ``dice_pooled = 2*sum(tp) / (2*sum(tp) + sum(fp) + sum(fn))``
        treats all images as one (1.0 if every mask is empty), ``iou_pooled`` likewise.

    Raises:
        ValueError: a score lacks a metric or a count.
    """
    scores: Sequence[Mapping[str, float]] = list(scores)
    summary: dict = {"images": len(scores)}
    totals = {}
    for key in ("tp", "fp", "fn"):
        try:
            totals[key] = float(sum(s[key] for s in scores))
        except KeyError:
            raise ValueError(f"every score needs the count {key!r} (from score())") from None
    tp, fp, fn = totals["tp"], totals["fp"], totals["fn"]
    summary["dice_pooled"] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    summary["iou_pooled"] = tp / (tp + fp + fn) if tp + fp + fn else 1.0
    for metric in METRICS:
        try:
            values = np.array([s[metric] for s in scores], dtype=float)
        except KeyError:
            raise ValueError(f"every score needs the metric {metric!r} (from score())") from None
        present = values[~np.isnan(values)]
        described = (
            {"mean": present.mean(), "median": np.median(present), "std": present.std()}
            if present.size
            else dict.fromkeys(("mean", "median", "std"), float("nan"))
        )
        summary[metric] = {
            **{k: float(v) for k, v in described.items()},
            "nan": int(values.size - present.size),
        }
    return summary


def score_classes(
    pred, true, names: Sequence[str], spacing=None, include_background: bool = False
) -> dict[str, dict[str, float]]:
    """`score` of each class of a predicted label map against the true one.

    Args:
        pred: integer label map, 2-D or 3-D, values ``0..len(names)-1``.
        true: integer label map of the same shape.
        names: the class names, index = value; ``names[0]`` is background.
        spacing: pixel size along each axis, or one number for all; None for 1.
        include_background: score class 0 too.

    Returns:
        ``{name: scores}`` per class, as `score` with ``empty="skip"`` (see the module doc).

    Raises:
        ValueError: label maps of different shapes or holding a value of ``len(names)`` or more.
    """
    pred, true = np.asarray(pred), np.asarray(true)
    if pred.shape != true.shape:
        raise ValueError(f"pred shape {pred.shape} differs from true shape {true.shape}")
    for name, labels in (("pred", pred), ("true", true)):
        if labels.size and (labels.min() < 0 or labels.max() >= len(names)):
            raise ValueError(
                f"{name} holds the value {labels.max()}; classes are 0..{len(names) - 1}"
            )
    first = 0 if include_background else 1
    return {
        names[k]: score(pred == k, true == k, spacing, empty="skip")
        for k in range(first, len(names))
    }


def summarize_classes(per_image: Iterable[Mapping[str, Mapping[str, float]]]) -> dict:
    """Describe each class over a data set from a list of `score_classes` results.

    Returns:
        ``{name: {"dice_mean", "dice_pooled", "iou_mean", "hd95_mean", "assd_mean",
        "hd95_nan", "n_images"}}``: NaN-ignoring means over the images that hold the class
        (in truth or prediction; ``n_images`` of them), Dice of the class's pooled pixel
        counts, and the number of those images without an HD95 (the class in only one mask).
    """
    per_image = list(per_image)
    names = list(per_image[0]) if per_image else []
    result = {}
    for name in names:
        summary = summarize(image[name] for image in per_image)
        held = summary["images"] - summary["dice"]["nan"]
        result[name] = {
            "dice_mean": summary["dice"]["mean"],
            "dice_pooled": summary["dice_pooled"] if held else float("nan"),
            "iou_mean": summary["iou"]["mean"],
            "hd95_mean": summary["hd95"]["mean"],
            "assd_mean": summary["assd"]["mean"],
            "hd95_nan": summary["hd95"]["nan"] - summary["dice"]["nan"],
            "n_images": held,
        }
    return result
