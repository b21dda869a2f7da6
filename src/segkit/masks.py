"""Masks and their representations: thresholding, checking, index lists, run-length strings,
one-hot, and the overlapping regions of a label map.

This is the one place that turns numbers into masks: probabilities (`binarize`, `to_mask`),
pixel values read from files (`from_pixel_values`) and anything claimed to be binary
(`as_binary`). Resizing lives in `segkit.resize`.

A binary mask is an integer or boolean array holding only 0 and 1. The functions here are
vectorised numpy (no Python loops over pixels) and check their inputs: anything that is not
what it claims to be raises a ``ValueError`` that names the offending argument.

```python
from segkit import masks
rle = masks.rle_encode(mask)                  # "5 3 20 2": Kaggle style, 1-based, column-major
same = masks.rle_decode(rle, mask.shape)
indices = masks.flatten(mask)                 # foreground positions in row-major order
```

Regions, as nnU-Net trains them, are overlapping sets of the labels of one label map: BraTS'
whole tumour, tumour core and enhancing tumour are ``(1, 2, 3)``, ``(1, 3)`` and ``(3,)``. A model
learns one sigmoid channel per region (`regions_from_labels` makes its targets), and its
channels become a label map again by painting the regions in order (`labels_from_regions`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "as_binary",
    "flatten",
    "unflatten",
    "rle_encode",
    "rle_decode",
    "binarize",
    "to_mask",
    "from_pixel_values",
    "from_label_values",
    "one_hot",
    "from_one_hot",
    "check_regions",
    "check_region_channels",
    "paint_order",
    "regions_from_labels",
    "labels_from_regions",
]

_ORDERS = ("F", "C")


def as_binary(mask, name: str = "mask", ndims: Sequence[int] | None = None) -> np.ndarray:
    """Return ``mask`` as a boolean array, checking it holds only 0 and 1.

    Args:
        mask: array-like of bools, or of numbers that are all 0 or 1.
        name: the argument name used in error messages.
        ndims: allowed numbers of dimensions (any when None).

    Raises:
        ValueError: ``mask`` has another number of dimensions or values other than 0 and 1.
    """
    array = np.asarray(mask)
    if ndims is not None and array.ndim not in ndims:
        allowed = " or ".join(str(n) for n in ndims)
        raise ValueError(
            f"{name} must have {allowed} dimensions, got shape {array.shape}"
            + (" (squeeze the channel axis first)" if array.ndim and array.shape[-1] == 1 else "")
        )
    if array.dtype == bool:
        return array
    if np.issubdtype(array.dtype, np.unsignedinteger):
        # Fast path for the common uint8 masks: one pass finds any value above 1.
        if array.size and array.max() > 1:
            raise ValueError(
                f"{name} must be binary (only 0 and 1, or bool), found the value "
                f"{array.max()!r}; use `mask > 0` for 0/255 images"
            )
        return array.astype(bool)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"{name} must be a boolean or numeric array, got dtype {array.dtype}")
    # One pass for the check: 0/1 arrays are where both are true and nothing else.
    is_zero, is_one = array == 0, array == 1
    if not np.all(is_zero | is_one):
        bad = array[~(is_zero | is_one)].flat[0]
        raise ValueError(
            f"{name} must be binary (only 0 and 1, or bool), found the value {bad!r}; "
            "use segkit.masks.binarize() for probabilities or `mask > 0` for 0/255 images"
        )
    return is_one


def _check_order(order: str) -> None:
    if order not in _ORDERS:
        raise ValueError(f"order must be 'F' (column-major) or 'C' (row-major), got {order!r}")


def _check_shape(shape, name: str = "shape") -> tuple[int, ...]:
    try:
        shape = tuple(int(size) for size in shape)
    except TypeError:
        raise ValueError(f"{name} must be a sequence of sizes, got {shape!r}") from None
    if not shape or any(size <= 0 for size in shape):
        raise ValueError(f"{name} must hold positive sizes, got {shape}")
    return shape


def flatten(mask) -> np.ndarray:
    """Indices of the foreground pixels of a binary mask in the flattened (row-major) image.

    Args:
        mask: binary 2-D ``(H, W)`` or 3-D ``(D, H, W)`` mask.

    Returns:
        Sorted ``int64`` indices into ``mask.ravel()``; empty for an empty mask.

    Raises:
        ValueError: ``mask`` is not 2-D or 3-D, or not binary.
    """
    return np.flatnonzero(as_binary(mask, "mask", ndims=(2, 3))).astype(np.int64)


def unflatten(indices, shape) -> np.ndarray:
    """Rebuild the mask whose foreground sits at row-major ``indices``: inverse of `flatten`.

    Args:
        indices: 1-D integer indices into the flattened image, each at most once, any order.
        shape: shape of the mask to rebuild, e.g. ``(H, W)``.

    Returns:
        A ``uint8`` mask of ``shape`` with 1 at ``indices`` and 0 elsewhere.

    Raises:
        ValueError: ``indices`` is not 1-D integers, has negative, repeated or too large values;
            or ``shape`` is not positive sizes.
    """
    shape = _check_shape(shape)
    indices = np.asarray(indices)
    if indices.ndim != 1:
        raise ValueError(f"indices must be 1-D, got shape {indices.shape}")
    if indices.size == 0:
        return np.zeros(shape, dtype=np.uint8)
    if not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(f"indices must be integers, got dtype {indices.dtype}")
    size = int(np.prod(shape))
    if indices.min() < 0:
        raise ValueError(f"indices must be non-negative, found {indices.min()}")
    if indices.max() >= size:
        raise ValueError(f"indices must be below {size} for shape {shape}, found {indices.max()}")
    if np.unique(indices).size != indices.size:
        raise ValueError("indices must not repeat a pixel")
    flat = np.zeros(size, dtype=np.uint8)
    flat[indices] = 1
    return flat.reshape(shape)


def rle_encode(mask, order: str = "F") -> str:
    """Run-length encode a 2-D binary mask as ``"start length start length ..."``.

    The default is the Kaggle convention: pixels numbered from 1 going down the columns
    (column-major, ``order="F"``), each run of foreground written as its first pixel and its
    length. ``order="C"`` numbers pixels along the rows instead.

    Args:
        mask: binary ``(H, W)`` mask.
        order: ``"F"`` (column-major, Kaggle) or ``"C"`` (row-major).

    Returns:
        Space-separated pairs; ``""`` for an empty mask.

    Raises:
        ValueError: ``mask`` is not 2-D and binary, or ``order`` is unknown.
    """
    _check_order(order)
    pixels = as_binary(mask, "mask", ndims=(2,)).ravel(order=order)
    # Pad with background so every run has a rising and a falling edge.
    padded = np.concatenate(([False], pixels, [False]))
    edges = np.flatnonzero(padded[1:] != padded[:-1])  # 0-based: run starts, then run ends
    runs = edges.reshape(-1, 2)
    starts, lengths = runs[:, 0] + 1, runs[:, 1] - runs[:, 0]
    return " ".join(map(str, np.column_stack((starts, lengths)).ravel().tolist()))


def _parse_rle(rle) -> np.ndarray:
    """The integers of an RLE string (or sequence) as a ``(runs, 2)`` array of start, length."""
    if rle is None:
        return np.zeros((0, 2), dtype=np.int64)
    if isinstance(rle, str):
        try:
            numbers = np.array(rle.split(), dtype=np.int64)
        except ValueError:
            raise ValueError(
                f"rle must hold integers separated by spaces, got {rle[:50]!r}"
            ) from None
    else:
        numbers = np.asarray(rle)
        if numbers.size and not np.issubdtype(numbers.dtype, np.integer):
            raise ValueError(f"rle must hold integers, got dtype {numbers.dtype}")
        numbers = numbers.astype(np.int64).ravel()
    if numbers.size % 2:
        raise ValueError(f"rle must hold (start, length) pairs, got an odd count of {numbers.size}")
    return numbers.reshape(-1, 2)


def rle_decode(rle, shape, order: str = "F") -> np.ndarray:
    """Decode a run-length string into a mask: inverse of `rle_encode`.

    Args:
        rle: ``"start length ..."`` with 1-based starts (or a sequence of those integers);
            ``""`` or None for an empty mask. Runs may come in any order but must not overlap.
        shape: ``(H, W)`` of the mask.
        order: ``"F"`` (column-major, Kaggle) or ``"C"`` (row-major); must match the encoder.

    Returns:
        A ``uint8`` mask of ``shape`` holding 0 and 1.

    Raises:
        ValueError: ``rle`` has an odd count, non-integers, starts below 1, lengths below 1, or
            overlapping or out-of-bounds runs; ``shape`` is not two positive sizes; bad ``order``.
    """
    _check_order(order)
    shape = _check_shape(shape)
    if len(shape) != 2:
        raise ValueError(f"shape must be (height, width), got {shape}")
    size = shape[0] * shape[1]
    runs = _parse_rle(rle)
    starts, lengths = runs[:, 0] - 1, runs[:, 1]  # 0-based starts from here on
    if np.any(starts < 0):
        raise ValueError(f"rle starts must be at least 1, found {starts.min() + 1}")
    if np.any(lengths < 1):
        raise ValueError(f"rle lengths must be at least 1, found {lengths.min()}")
    ends = starts + lengths  # exclusive
    if np.any(ends > size):
        raise ValueError(f"rle has a run past the last pixel ({size} pixels in shape {shape})")
    by_start = np.argsort(starts, kind="stable")
    starts, ends = starts[by_start], ends[by_start]
    if np.any(starts[1:] < ends[:-1]):
        raise ValueError("rle has overlapping runs")
    # Index every foreground pixel directly, so the work grows with the foreground, not the
    # image: the k-th foreground pixel lies (k - pixels in earlier runs) after its run's start.
    lengths = ends - starts
    run_of_pixel = np.repeat(np.arange(len(starts)), lengths)
    pixels_before_run = np.cumsum(lengths) - lengths
    positions = starts[run_of_pixel] + np.arange(lengths.sum()) - pixels_before_run[run_of_pixel]
    flat = np.zeros(size, dtype=np.uint8)
    flat[positions] = 1
    return flat.reshape(shape, order=order)


def binarize(prob, threshold: float = 0.5) -> np.ndarray:
    """Threshold probabilities into a binary mask: 1 where ``prob > threshold``.

    Args:
        prob: array of probabilities (any shape).
        threshold: values strictly above it become foreground.

    Returns:
        A ``uint8`` array of 0 and 1, shaped like ``prob``.

    Raises:
        ValueError: ``prob`` is not numeric or contains NaN.
    """
    prob = np.asarray(prob)
    if not (np.issubdtype(prob.dtype, np.number) or prob.dtype == bool):
        raise ValueError(f"prob must be numeric, got dtype {prob.dtype}")
    if np.issubdtype(prob.dtype, np.floating) and np.isnan(prob).any():
        raise ValueError("prob contains NaN")
    return (prob > threshold).astype(np.uint8)


def to_mask(probs: np.ndarray, threshold: float = 0.5, regions=None) -> np.ndarray:
    """``uint8 (H, W)`` mask from ``(H, W, K)`` probabilities: `binarize` of the one channel, the
    most probable class where there are several channels, or, with ``regions`` (one channel per
    region), the label map `labels_from_regions` paints."""
    if regions is not None:
        return labels_from_regions(probs, regions, threshold)
    if probs.shape[-1] == 1:
        return binarize(probs[..., 0], threshold)
    return np.argmax(probs, axis=-1).astype(np.uint8)


def from_pixel_values(pixels) -> np.ndarray:
    """A mask image's pixel values, 0/255 or 0/1, as a ``uint8`` mask in {0, 1}.

    Raises:
        ValueError: the image holds other values; the message lists them.
    """
    pixels = np.asarray(pixels)
    high = int(pixels.max()) if pixels.size else 0
    if high not in (0, 1, 255) or np.any((pixels != 0) & (pixels != high)):
        values = np.unique(pixels)
        shown = ", ".join(str(v) for v in values[:8]) + (", ..." if len(values) > 8 else "")
        raise ValueError(f"not binary: values {shown} (expected 0/255 or 0/1)")
    return (pixels != 0).astype(np.uint8)


def label_map_hint(pixels) -> str:
    """What to add to `from_pixel_values`' error for a mask that may be a label map: the
    options that read it as one, in the command line's words and Python's."""
    top = int(np.asarray(pixels).max())
    return (
        f"; if it is a label map of classes 0..{top}, read it with --num-classes {top + 1} "
        "(num_classes in Python) or a classes.json beside the data"
    )


def from_label_values(pixels, num_classes: int, ignore_index: int | None = None) -> np.ndarray:
    """A label map's pixel values, each a class index in ``[0, num_classes)``, as ``uint8``.

    Args:
        pixels: the label map.
        num_classes: number of classes, background included.
        ignore_index: a value marking unlabelled pixels (e.g. 255), kept as it is.

    Raises:
        ValueError: a value other than ``ignore_index`` is ``num_classes`` or more; the message
            names the largest.
    """
    pixels = np.asarray(pixels)
    labelled = pixels if ignore_index is None else pixels[pixels != ignore_index]
    high = int(labelled.max()) if labelled.size else 0
    if high >= num_classes:
        raise ValueError(
            f"a label map holding the value {high}; classes are 0..{num_classes - 1} "
            f"(num_classes={num_classes})"
        )
    return pixels.astype(np.uint8)


def one_hot(labels, num_classes: int) -> np.ndarray:
    """One channel per class: ``(...)`` integer labels become ``(..., num_classes)`` 0/1.

    Args:
        labels: integer class labels in ``[0, num_classes)`` (floats holding whole numbers
            are accepted).
        num_classes: number of classes, background included.

    Returns:
        A ``uint8`` array with a trailing class axis.

    Raises:
        ValueError: ``num_classes`` below 1; labels negative, too large or not whole numbers.
    """
    if int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    labels = np.asarray(labels)
    if np.issubdtype(labels.dtype, np.floating):
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise ValueError("labels must be whole numbers")
    elif not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise ValueError(f"labels must be non-negative, found {labels.min()}")
    if labels.size and labels.max() >= num_classes:
        raise ValueError(f"labels must be below num_classes={num_classes}, found {labels.max()}")
    return (labels[..., None] == np.arange(num_classes)).astype(np.uint8)


def from_one_hot(onehot, axis: int = -1) -> np.ndarray:
    """Integer labels from a one-hot array: inverse of `one_hot`.

    Args:
        onehot: binary array with exactly one 1 along ``axis`` at every position.
        axis: the class axis.

    Returns:
        ``int64`` labels with ``axis`` removed.

    Raises:
        ValueError: ``onehot`` is not binary or some position has no or several hot classes
            (for probabilities use ``np.argmax`` instead).
    """
    hot = as_binary(onehot, "onehot")
    if hot.ndim == 0:
        raise ValueError("onehot must have a class axis")
    if np.any(hot.sum(axis=axis) != 1):
        raise ValueError(
            "onehot must have exactly one 1 along the class axis everywhere "
            "(for probabilities use np.argmax)"
        )
    return np.argmax(hot, axis=axis).astype(np.int64)


def check_regions(regions) -> tuple[tuple[int, ...], ...]:
    """``regions`` as a tuple of label tuples, checked.

    Args:
        regions: one sequence of labels per region, e.g. ``[[1, 2, 3], [1, 3], [3]]``.

    Raises:
        ValueError: no regions, an empty region, a label below 1 (background is in no region), a
            label given twice in a region, or two regions of the same labels.
    """
    try:
        checked = tuple(tuple(int(label) for label in region) for region in regions)
    except (TypeError, ValueError):
        raise ValueError(
            f"regions must be lists of integer labels, e.g. [[1, 2, 3], [3]], got {regions!r}"
        ) from None
    if not checked:
        raise ValueError("regions must hold at least one region")
    for region in checked:
        if not region or min(region) < 1 or len(set(region)) != len(region):
            raise ValueError(
                f"each region must hold distinct labels of 1 or more (background is in none), "
                f"got {list(region)}"
            )
    if len({frozenset(region) for region in checked}) != len(checked):
        raise ValueError(f"two regions hold the same labels: {[list(r) for r in checked]}")
    return checked


def check_region_channels(probs, regions, name: str = "probs") -> None:
    """Check that ``probs`` holds one channel (last axis) per region of ``regions``.

    Args:
        probs: the array of a region model's output (probabilities or masks).
        regions: the labels of each region, in channel order.
        name: what the error message calls ``probs``.

    Raises:
        ValueError: bad regions (see `check_regions`), or not one channel per region.
    """
    count = len(check_regions(regions))
    if np.ndim(probs) == 0 or np.shape(probs)[-1] != count:
        raise ValueError(
            f"{name} must have one channel per region ({count}), got shape {np.shape(probs)}"
        )


def paint_order(regions) -> list[tuple[int, int]]:
    """How `labels_from_regions` paints: ``(region index, label)`` pairs, largest region first.

    Regions are painted from the most labels to the fewest (in their given order when as
    large), so that each nested region is painted over the one it lies in. A region paints the
    smallest of its labels that no region painted after it holds: ``(1, 2, 3)``, ``(1, 3)``,
    ``(3,)`` paint 2, 1 and 3, the label map they came from.

    Raises:
        ValueError: bad regions (see `check_regions`), or a region whose every label is held by
            regions painted after it, so that none of its pixels would keep its paint.
    """
    regions = check_regions(regions)
    order = sorted(range(len(regions)), key=lambda r: -len(regions[r]))
    painted = []
    for position, index in enumerate(order):
        later = {label for r in order[position + 1 :] for label in regions[r]}
        own = sorted(set(regions[index]) - later)
        if not own:
            raise ValueError(
                f"region {list(regions[index])} has no label of its own: the smaller regions "
                "painted after it cover all of its labels"
            )
        painted.append((index, own[0]))
    return painted


def regions_from_labels(labels, regions) -> np.ndarray:
    """One channel per region: ``(...)`` labels become ``(..., R)`` 0/1, channel ``r`` being 1
    where the label is one of ``regions[r]``.

    Args:
        labels: integer label map of any shape.
        regions: the labels of each region (see `check_regions`).

    Returns:
        A ``uint8`` array with a trailing region axis.
    """
    labels = np.asarray(labels)
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    channels = [np.isin(labels, region) for region in check_regions(regions)]
    return np.stack(channels, axis=-1).astype(np.uint8)


def labels_from_regions(probs, regions, threshold: float = 0.5) -> np.ndarray:
    """The label map nnU-Net writes for a region model: each region painted where its channel
    is above ``threshold``, in `paint_order`.

    For nested regions that each add one label (BraTS' whole tumour, core and enhancing) this
    is the inverse of `regions_from_labels`. A region that adds several labels paints the
    smallest; `regions_from_labels` of the result still gives back its regions.

    Args:
        probs: ``(..., R)`` probabilities (or 0/1 masks), one channel per region.
        regions: the labels of each region, in channel order.
        threshold: a channel above it holds its region.

    Returns:
        A ``uint8`` label map of ``probs``' shape without the region axis; 0 where no region is.

    Raises:
        ValueError: bad regions (see `paint_order`), or not one channel per region.
    """
    probs = np.asarray(probs)
    check_region_channels(probs, regions)
    order = paint_order(regions)
    labels = np.zeros(probs.shape[:-1], dtype=np.uint8)
    for index, label in order:
        labels[probs[..., index] > threshold] = label
    return labels
