"""Resampling volumes to another voxel spacing, and back to a case's own geometry.

```python
from segkit.data import resampling, volumes

scan = volumes.read_volume("case_001.nii.gz")                 # spacing (0.8, 0.8, 3.0)
iso = resampling.resample_volume(scan, (1.0, 1.0, 1.0))         # images: cubic spline
iso.spacing                                                      # (1.0, 1.0, 1.0)
labels = resampling.resample_volume(truth, (1.0, 1.0, 1.0), kind="labels")  # nearest
# A prediction made on the resampled grid, brought back onto the scan's own voxels:
back = resampling.resample_to(predicted, iso.affine, scan.shape, scan.affine, kind="labels")
```

**Geometry.** A volume's ``affine`` maps voxel indices to world millimetres
(`segkit.data.volumes.Volume`). `target_geometry` makes the grid of another spacing that covers
the same extent: the same axis directions (flipped or permuted axes stay so), voxels exactly
``spacing`` apart, ``round(shape * old spacing / spacing)`` of them per axis, centred on the
old grid's centre. `resample_to` then reads each new voxel's value at its world position in
the old grid (scipy's ``ndimage.affine_transform``), so any grid can be resampled onto any other
that overlaps it, in particular back onto the case's own: a mask predicted at the target
spacing is written with the scan's exact shape and affine.

**Interpolation**, as nnU-Net's defaults: images by third-order splines; labels by nearest
neighbour (``labels="nearest"``), or, smoother, each class's one-hot map linearly and the most
likely class taken (``labels="linear"``). Positions outside the old grid take the nearest edge
value. nnU-Net also resamples the out-of-plane axis of strongly anisotropic images with
nearest neighbour; segkit does not (yet): every axis is interpolated alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from segkit.data.volumes import Volume

__all__ = ["IMAGE_ORDER", "resample_to", "resample_volume", "target_geometry"]

#: The spline order images are resampled with (nnU-Net's default).
IMAGE_ORDER = 3
_LABEL_MODES = ("nearest", "linear")


def _spacing(affine: np.ndarray) -> np.ndarray:
    return np.linalg.norm(np.asarray(affine, float)[:3, :3], axis=0)


def _check_spacing(spacing: Sequence[float], what: str) -> np.ndarray:
    spacing = np.asarray(spacing, float)
    if spacing.shape != (3,) or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise ValueError(f"{what} must be three positive numbers (mm), got {tuple(spacing)}")
    return spacing


def target_geometry(
    shape: Sequence[int], affine: np.ndarray, spacing: Sequence[float]
) -> tuple[tuple[int, int, int], np.ndarray]:
    """The grid of voxels ``spacing`` mm apart covering the extent of ``(shape, affine)``.

    Args:
        shape: the voxel shape of the volume.
        affine: its ``(4, 4)`` voxel-to-world affine.
        spacing: the new voxel size along each of its voxel axes, mm.

    Returns:
        ``(shape, affine)`` of the new grid: each axis in the old one's world direction, at
        least one voxel, the two grids' centres at the same world point.

    Raises:
        ValueError: a spacing (asked for or of ``affine``) that is not positive and finite.
    """
    affine = np.asarray(affine, float)
    old_spacing = _check_spacing(_spacing(affine), "the volume's spacing")
    spacing = _check_spacing(spacing, "the target spacing")
    old_shape = np.asarray(shape[:3], float)
    new_shape = np.maximum(np.round(old_shape * old_spacing / spacing), 1).astype(int)
    directions = affine[:3, :3] / old_spacing
    new = np.eye(4)
    new[:3, :3] = directions * spacing
    old_centre = affine[:3, :3] @ ((old_shape - 1) / 2) + affine[:3, 3]
    new[:3, 3] = old_centre - new[:3, :3] @ ((new_shape - 1) / 2)
    return tuple(int(n) for n in new_shape), new


def resample_to(
    array: np.ndarray,
    affine: np.ndarray,
    shape: Sequence[int],
    target_affine: np.ndarray,
    *,
    kind: str = "image",
    labels: str = "nearest",
) -> np.ndarray:
    """Resample ``array`` (on the grid ``affine``) onto the grid ``(shape, target_affine)``.

    Args:
        array: ``(X, Y, Z)`` or ``(X, Y, Z, C)`` (channels resampled one by one).
        affine: ``array``'s voxel-to-world affine.
        shape: the new grid's voxel shape.
        target_affine: the new grid's affine.
        kind: ``"image"`` (cubic spline, float32 out) or ``"labels"`` (class indices, the
            input's dtype out).
        labels: for labels, ``"nearest"`` or ``"linear"`` (on the one-hot map of each class).

    Returns:
        The resampled array, of ``shape`` (and ``array``'s channels).
    """
    if kind not in ("image", "labels"):
        raise ValueError(f"kind must be 'image' or 'labels', got {kind!r}")
    if labels not in _LABEL_MODES:
        raise ValueError(f"labels must be one of {_LABEL_MODES}, got {labels!r}")
    from scipy import ndimage

    # Each new voxel's index in the old grid: old_affine^-1 @ new_affine.
    index_map = np.linalg.inv(np.asarray(affine, float)) @ np.asarray(target_affine, float)
    shape = tuple(int(s) for s in shape[:3])

    def warp(values: np.ndarray, order: int, output=np.float32) -> np.ndarray:
        return ndimage.affine_transform(
            values,
            index_map[:3, :3],
            offset=index_map[:3, 3],
            output_shape=shape,
            order=order,
            mode="nearest",
            output=output,
        )

    if array.ndim == 4:
        channels = [
            resample_to(array[..., c], affine, shape, target_affine, kind=kind, labels=labels)
            for c in range(array.shape[-1])
        ]
        return np.stack(channels, axis=-1)
    if kind == "image":
        return warp(np.asarray(array, np.float32), IMAGE_ORDER)
    if labels == "nearest":
        return warp(array, 0, output=array.dtype)
    # Linear on one-hot: the class whose interpolated share is largest wins.
    classes = np.unique(array)
    best = np.full(shape, -1.0, np.float32)
    result = np.zeros(shape, array.dtype)
    for value in classes:
        share = warp((array == value).astype(np.float32), 1)
        better = share > best
        result[better], best[better] = value, share[better]
    return result


def resample_volume(
    volume: Volume, spacing: Sequence[float], *, kind: str = "image", labels: str = "nearest"
) -> Volume:
    """``volume`` resampled to voxels ``spacing`` mm apart (`target_geometry`, `resample_to`).

    Returns:
        A `Volume` with the new array and affine, the same source and no header (the old
        header describes the old grid).
    """
    shape, affine = target_geometry(volume.shape, volume.affine, spacing)
    array = resample_to(volume.array, volume.affine, shape, affine, kind=kind, labels=labels)
    return Volume(array, affine, volume.source)
