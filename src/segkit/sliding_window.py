"""Sliding-window inference: a network that sees patches, run over a whole N-D volume.

```python
import numpy as np
from segkit.sliding_window import sliding_window

def predict(windows):                      # (N, 64, 64, 64, C) -> (N, 64, 64, 64, K)
    return model.predict_on_batch(windows)

probabilities = sliding_window(predict, volume, (64, 64, 64))   # volume: (X, Y, Z, C)
probabilities.shape                                              # (X, Y, Z, K)
```

How it works, step for step as MONAI's ``sliding_window_inference`` with ``mode="gaussian"``
(the tests compare the two on stored vectors, within 1e-5):

- **Padding.** An axis shorter than the patch is padded to the patch's length with
  ``pad_value``, half before and half after (the odd voxel after); the output is cropped back.
- **Windows.** Along each axis the windows start every ``int(patch * (1 - overlap))`` voxels
  (at least 1; the whole axis when the patch spans it), as few as reach the end; the last one
  is moved back to end at the volume's edge. Every combination of the axes' starts is a window.
- **Weights.** Each window's prediction is weighted by a Gaussian centred on the window
  (``gaussian_weights``: sigma ``sigma_scale`` times the patch length per axis, 1/8 as in
  nnU-Net and MONAI), because a network sees less context near a patch's border; weights
  below 1e-3 are raised to 1e-3 (MONAI's clipping), so no voxel's total weight is near zero.
  Each voxel's output is the weighted mean of the windows that cover it.
- **Batches.** ``batch_size`` windows go through ``predict`` at once.
- **Mirroring.** ``mirror_axes`` adds test-time augmentation as nnU-Net does it: each batch is
  also predicted flipped along every combination of those axes, flipped back, and averaged
  (2 ** len(mirror_axes) passes), before weighting.
- **Memory.** The output is stitched on the host in one float32 array of the output's size
  and one weight sum per voxel; the input is read a batch of windows at a time.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["MIN_WEIGHT", "gaussian_weights", "sliding_window", "window_starts"]

#: The smallest weight a voxel of a window gets (MONAI clips its Gaussian map so).
MIN_WEIGHT = 1e-3


def gaussian_weights(patch_size: Sequence[int], sigma_scale: float = 0.125) -> np.ndarray:
    """The importance of each voxel of a window's prediction: a Gaussian centred on the patch.

    Args:
        patch_size: the window's size per axis.
        sigma_scale: sigma as a share of the patch length along each axis.

    Returns:
        ``float32`` array of ``patch_size``, 1 at the centre (between the middle voxels for an
        even length), not normalised, with values below `MIN_WEIGHT` raised to it.
    """
    weights = np.ones((), np.float64)
    for length in patch_size:
        offsets = np.arange(length, dtype=np.float64) - (length - 1) / 2
        sigma = sigma_scale * length
        weights = np.multiply.outer(weights, np.exp(-(offsets**2) / (2 * sigma**2)))
    # MONAI raises everything below max(smallest weight, 1e-3) to that value.
    floor = max(float(weights.min()), MIN_WEIGHT)
    return np.maximum(weights, floor).astype(np.float32)


def window_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Where windows of length ``patch`` start along an axis of length ``size >= patch``.

    The step is ``int(patch * (1 - overlap))`` (at least 1, or the whole axis when ``patch ==
    size``); the last window is moved back so that it ends at the axis's end.
    """
    if patch > size:
        raise ValueError(f"a window of {patch} voxels does not fit an axis of {size}")
    step = patch if patch == size else max(int(patch * (1 - overlap)), 1)
    count = next(n for n in range(size) if n * step + patch >= size) + 1
    return [min(n * step, size - patch) for n in range(count)]


def sliding_window(
    predict: Callable[[np.ndarray], np.ndarray],
    volume: np.ndarray,
    patch_size: Sequence[int],
    *,
    overlap: float = 0.5,
    batch_size: int = 4,
    sigma_scale: float = 0.125,
    mirror_axes: Sequence[int] = (),
    pad_value: float = 0.0,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Predict a whole volume window by window and blend the windows with Gaussian weights.

    Args:
        predict: maps a batch of windows, ``float32 (N, *patch_size, C)``, to per-voxel
            outputs (probabilities), ``(N, *patch_size, K)``.
        volume: ``(*spatial, C)``, channels last, with as many spatial axes as ``patch_size``
            has entries (2-D, 3-D or more).
        patch_size: the window's size per spatial axis.
        overlap: share of a window that overlaps its neighbour, in [0, 1).
        batch_size: windows per call of ``predict``.
        sigma_scale: the Gaussian's sigma as a share of the patch (1/8, nnU-Net's and MONAI's).
        mirror_axes: spatial axes (0 for the first) to mirror for test-time augmentation;
            empty for none.
        pad_value: the value axes shorter than the patch are padded with.
        progress: called after each batch with (windows done, windows in all).

    Returns:
        ``float32 (*spatial, K)``: each voxel's Gaussian-weighted mean over its windows.

    Raises:
        ValueError: a volume whose axes do not match ``patch_size``, an overlap outside [0, 1),
            a mirror axis that does not exist, or ``predict`` returning the wrong shape.
    """
    volume = np.asarray(volume)
    dims = len(patch_size)
    if volume.ndim != dims + 1:
        raise ValueError(
            f"volume of shape {volume.shape} does not fit a {dims}-D patch {tuple(patch_size)}: "
            f"expected {dims} spatial axes and channels last"
        )
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if any(axis < 0 or axis >= dims for axis in mirror_axes):
        raise ValueError(f"mirror axes {tuple(mirror_axes)} must be spatial axes 0..{dims - 1}")
    patch_size = tuple(int(p) for p in patch_size)
    size = volume.shape[:dims]

    # Pad axes shorter than the patch, half before (rounded down), the rest after.
    before = [max(p - s, 0) // 2 for p, s in zip(patch_size, size, strict=True)]
    after = [max(p - s, 0) - b for p, s, b in zip(patch_size, size, before, strict=True)]
    if any(before) or any(after):
        pads = [*zip(before, after, strict=True), (0, 0)]
        volume = np.pad(volume, pads, constant_values=pad_value)
    padded = volume.shape[:dims]

    starts = [window_starts(s, p, overlap) for s, p in zip(padded, patch_size, strict=True)]
    corners = list(itertools.product(*starts))
    weights = gaussian_weights(patch_size, sigma_scale)[..., None]
    flips = [c for n in range(len(mirror_axes) + 1) for c in itertools.combinations(mirror_axes, n)]

    output = None
    weight_sum = np.zeros(padded, np.float32)
    for first in range(0, len(corners), batch_size):
        batch_corners = corners[first : first + batch_size]
        regions = [
            tuple(slice(c, c + p) for c, p in zip(corner, patch_size, strict=True))
            for corner in batch_corners
        ]
        windows = np.stack([volume[region] for region in regions]).astype(np.float32, copy=False)
        predicted = _mirrored(predict, windows, flips)
        if output is None:
            output = np.zeros((*padded, predicted.shape[-1]), np.float32)
        predicted *= weights  # in place: the batch is this function's own copy
        for region, window in zip(regions, predicted, strict=True):
            output[region] += window
            weight_sum[region] += weights[..., 0]
        if progress is not None:
            progress(first + len(batch_corners), len(corners))
    output /= weight_sum[..., None]
    crop = tuple(slice(b, b + s) for b, s in zip(before, size, strict=True))
    return output[crop]


def _mirrored(predict, windows: np.ndarray, flips: list[tuple[int, ...]]) -> np.ndarray:
    """The mean of ``predict`` over the windows flipped along each combination of axes in
    ``flips``, each prediction flipped back."""
    total = None
    for axes in flips:
        array_axes = tuple(axis + 1 for axis in axes)  # axis 0 is the batch
        flipped = np.flip(windows, array_axes) if axes else windows
        # A copy (np.array copies), so that weighting in place leaves the caller's array alone.
        predicted = np.array(predict(np.ascontiguousarray(flipped)), np.float32)
        if predicted.ndim != windows.ndim or predicted.shape[:-1] != windows.shape[:-1]:
            raise ValueError(
                f"predict returned shape {predicted.shape} for windows of shape "
                f"{windows.shape}; expected {(*windows.shape[:-1], 'K')}"
            )
        predicted = np.flip(predicted, array_axes) if axes else predicted
        total = predicted if total is None else total + predicted
    return total / len(flips) if len(flips) > 1 else total
