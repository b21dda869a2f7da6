"""Segmenting volumes slice by slice: NIfTI files and DICOM series in, NIfTI label maps out.

```python
import segkit.volumes

written = segkit.volumes.predict_volumes(
    "resunet.figshare", ["scan.nii.gz", "dicom/series_3"], "masks", overlays=True
)
# masks/scan_mask.nii.gz, scan_mask.json, scan_montage.png; masks/series_3_mask.nii.gz, ...
```

segkit's models are 2-D, so a volume is segmented one slice at a time:

1. it is read by `segkit.data.volumes.read_volume` and cut into slices along its axial axis
   (found from the affine) or the voxel axis given, each laid out as a viewer shows it;
2. its voxels are mapped to 8 bits by the volume's own percentile window (0.5th to 99.5th
   percentile to 0..255, `segkit.data.volumes.to_uint8`), since the models read 8-bit images;
3. each slice is then segmented as an image file would be: resized to the model, normalised as
   its weights say, run (with the model's test-time augmentation), brought back to the slice's
   size, thresholded (or the most probable class taken) and post-processed, as the model's
   `segkit.inference.InferenceSettings` say;
4. the slice masks are put back in the file's voxel order and written as ``<name>_mask.nii.gz``:
   ``uint8`` labels (0/1, or class indices) with the input's shape and affine (and, for a NIfTI
   input, the rest of its header geometry). A DICOM series gives a NIfTI aligned with it.

Beside each mask, ``<name>_mask.json`` records how it was made: the model, the axis, the
inference settings and the intensity window. With ``overlays``, ``<name>_montage.png`` shows
the slices that hold a prediction, outlined as `segkit.visualize` draws them, each tile marked
with its index along the axis in the file (from 0).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from segkit._io import check_writable, write_json
from segkit.data import volumes
from segkit.data.classes import default_names
from segkit.inference import Segmenter, load_model
from segkit.postprocess import PostProcessing
from segkit.progress import Progress
from segkit.resize import resize_probabilities
from segkit.visualize import label_overlay, overlay, write_png

__all__ = ["MONTAGE_TILES", "SegmentedVolume", "montage", "predict_volumes", "segment_volume"]

#: Most slices a montage shows; more are thinned evenly.
MONTAGE_TILES = 36
_GAP = 2  # pixels between montage tiles


@dataclass(frozen=True)
class SegmentedVolume:
    """A volume's predicted labels, and the slices they were made from.

    Attributes:
        labels: ``uint8`` label map in the volume's voxel order and shape.
        images: ``uint8 (N, H, W, C)``: the slices the model saw, before resizing.
        masks: ``uint8 (N, H, W)``: the predicted slice masks (``labels`` cut the same way).
        slicing: how the slices were cut (`segkit.data.volumes.Slicing`).
        window: the intensity window mapped to 0..255.
        threshold: the probability threshold used (one-channel models).
        class_names: the classes of a multi-class model (index = value), else None.
    """

    labels: np.ndarray
    images: np.ndarray
    masks: np.ndarray
    slicing: volumes.Slicing
    window: tuple[float, float]
    threshold: float
    class_names: tuple[str, ...] | None = None


def segment_volume(
    segmenter: Segmenter,
    volume: volumes.Volume,
    *,
    axis: int | None = None,
    threshold: float | None = None,
    batch_size: int = 8,
    progress: bool = False,
) -> SegmentedVolume:
    """Segment every slice of ``volume`` along ``axis`` (default: its axial axis).

    Args:
        segmenter: a loaded model (`segkit.inference.load_model`), run with its settings
            (test-time augmentation, post-processing).
        volume: the volume (`segkit.data.volumes.read_volume`).
        axis: the voxel axis to cut slices along; None for the axial axis.
        threshold: probability above which a pixel is foreground; None takes the segmenter's.
        batch_size: slices per forward pass.
        progress: show the count of slices done, the rate and the time left on standard error.

    Raises:
        ValueError: a bad ``axis`` or ``threshold``, or a model that reads channels a volume
            does not have.
    """
    threshold = segmenter.threshold if threshold is None else threshold
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
    slicing = volumes.slicing(volume, axis)
    window = volumes.percentile_window(volume.array)
    images = _model_channels(slicing.slices(volumes.to_uint8(volume.array, window)), segmenter)
    masks = np.zeros(images.shape[:3], np.uint8)
    label = f"predict {volumes.volume_name(volume.source)}"
    shown = Progress(len(images), "slices", label, enabled=progress)
    channels = 1
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        for offset, probs in enumerate(segmenter.predict(list(batch))):
            channels = probs.shape[-1]
            probs = resize_probabilities(probs, batch.shape[1:3])
            masks[start + offset] = segmenter.to_mask(probs, threshold)
        shown.update(len(batch))
    names = None
    if channels > 1:  # a multi-class model: its own class names where it records them
        names = segmenter.class_names or default_names(channels)
    return SegmentedVolume(
        labels=slicing.assemble(masks),
        images=images,
        masks=masks,
        slicing=slicing,
        window=window,
        threshold=float(threshold),
        class_names=tuple(names) if names else None,
    )


def _model_channels(slices: np.ndarray, segmenter: Segmenter) -> np.ndarray:
    """``(N, H, W)`` greyscale slices as the ``(N, H, W, C)`` images the model reads."""
    channels = segmenter.prep.channels
    if channels == 1:
        return slices[..., None]
    if channels == 3:  # an RGB model: grey repeated, as for a greyscale image file
        return np.repeat(slices[..., None], 3, axis=-1)
    raise ValueError(
        f"model {segmenter.name} reads the channels {channels}; a volume has one channel"
    )


def montage(segmented: SegmentedVolume) -> np.ndarray | None:
    """RGB picture of the slices that hold a prediction, side by side; None if none does.

    Each tile is the slice with the predicted outline (`segkit.visualize.overlay`; classes
    filled by `segkit.visualize.label_overlay` for a multi-class model), marked with its index
    along the axis in the file. At most `MONTAGE_TILES` slices, evenly spread, are shown.
    """
    held = np.flatnonzero(segmented.masks.reshape(len(segmented.masks), -1).any(axis=1))
    if not held.size:
        return None
    if held.size > MONTAGE_TILES:
        held = held[np.linspace(0, held.size - 1, MONTAGE_TILES).round().astype(int)]
    tiles = []
    for n in held:
        image, mask = segmented.images[n], segmented.masks[n]
        if segmented.class_names is None:
            tile = overlay(image, mask)
        else:
            tile = label_overlay(image, mask, segmented.class_names)
        tiles.append(_mark(tile, f"{segmented.slicing.indices[n]}"))
    columns = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / columns)
    height, width = tiles[0].shape[:2]
    picture = np.zeros(
        (rows * (height + _GAP) - _GAP, columns * (width + _GAP) - _GAP, 3), np.uint8
    )
    for i, tile in enumerate(tiles):
        top, left = (i // columns) * (height + _GAP), (i % columns) * (width + _GAP)
        picture[top : top + height, left : left + width] = tile
    return picture


def _mark(tile: np.ndarray, text: str) -> np.ndarray:
    """Write ``text`` on a dark box in the tile's bottom-left corner."""
    picture = Image.fromarray(tile)
    draw = ImageDraw.Draw(picture)
    bottom = tile.shape[0] - 2
    draw.rectangle((2, bottom - 12, 8 + int(draw.textlength(text)), bottom), fill=(0, 0, 0))
    draw.text((5, bottom - 12), text, fill=(255, 255, 255))
    return np.asarray(picture)


def predict_volumes(
    model: str | Path | Segmenter,
    inputs: Iterable[str | Path],
    out: str | Path,
    *,
    weights: str | None = None,
    axis: int | None = None,
    threshold: float | None = None,
    tta: str | None = None,
    postprocess: str | PostProcessing | None = None,
    defaults: bool = True,
    batch_size: int = 8,
    overlays: bool = False,
    random_weights: bool = False,
    progress: bool = False,
    precision: str = "float32",
) -> list[Path]:
    """Segment NIfTI files and DICOM series folders; write a NIfTI label map per volume.

    Args:
        model: a model spec (see `segkit.inference`) or a loaded `Segmenter`.
        inputs: ``.nii`` / ``.nii.gz`` files and folders each holding one DICOM series.
        out: output folder; gets ``<name>_mask.nii.gz`` and ``<name>_mask.json`` per volume
            (``<name>``: the file name less ``.nii(.gz)``, or the DICOM folder's name).
        weights: weights tag when ``model`` is a registry name.
        axis: the voxel axis to segment slices along; None for each volume's axial axis.
        threshold: probability above which a voxel is foreground; None takes the model's (see
            `segkit.inference.InferenceSettings`).
        tta: test-time augmentation of each slice, ``"none"``, ``"flips"`` or ``"dihedral"``;
            None takes the model's.
        postprocess: post-processing rules for each slice mask (`segkit.postprocess`); None
            takes the model's.
        defaults: False ignores the model's stored inference defaults (see
            `segkit.inference.load_model`).
        batch_size: slices per forward pass.
        overlays: also write ``<name>_montage.png``, the slices holding a prediction.
        random_weights: allow a bare registry name (untrained weights; for testing).
        progress: show the count, rate and time left on standard error.
        precision: ``"bfloat16"`` runs a Keras model in bfloat16 (see `segkit.inference`).

    Returns:
        The mask files written.

    Raises:
        FileNotFoundError: an input that does not exist.
        segkit.data.DataError: an input that is not a readable volume (the message names it).
    """
    inputs = [Path(i) for i in inputs]
    for path in inputs:
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
    changes = {"threshold": threshold, "tta": tta, "postprocess": postprocess}
    if isinstance(model, Segmenter):
        segmenter = model.with_settings(defaults=defaults, **changes)
    else:
        segmenter = load_model(
            model,
            weights,
            random_weights=random_weights,
            precision=precision,
            defaults=defaults,
            **changes,
        )
    out = check_writable(out)
    written = []
    for path in inputs:
        volume = volumes.read_volume(path)
        segmented = segment_volume(
            segmenter, volume, axis=axis, batch_size=batch_size, progress=progress
        )
        name = volumes.volume_name(path)
        axis_used = segmented.slicing.axis
        mask_path = out / f"{name}_mask.nii.gz"
        low, high = volumes.PERCENTILES
        description = f"segkit labels; axis {axis_used}; intensity p{low}-p{high} to 0-255"
        volumes.write_labels(mask_path, segmented.labels, volume, description)
        written.append(mask_path)
        picture = montage(segmented) if overlays else None
        if picture is not None:
            write_png(out / f"{name}_montage.png", picture)
        write_json(out / f"{name}_mask.json", _record(path, segmenter, segmented, volume))
    return written


def _record(path: Path, segmenter: Segmenter, segmented: SegmentedVolume, volume) -> dict:
    """How a mask was made, for the JSON beside it."""
    names = segmented.class_names or ("background", "foreground")
    return {
        "source": str(path),
        "model": segmenter.name,
        "axis": segmented.slicing.axis,
        "slices": len(segmented.masks),
        "slices_with_prediction": int(
            segmented.masks.reshape(len(segmented.masks), -1).any(1).sum()
        ),
        "spacing_mm": list(volume.spacing),
        "settings": segmenter.settings.to_dict(),
        "labels": dict(enumerate(names)),
        "intensity": {
            "mapping": "percentile window to 0..255, then the model's own normalisation",
            "percentiles": list(volumes.PERCENTILES),
            "window": list(segmented.window),
            "normalisation": segmenter.prep.normalize,
        },
    }
