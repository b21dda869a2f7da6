"""Segmenting volumes slice by slice: NIfTI files and DICOM series in, NIfTI label maps out.

```python
import segkit.volumes

written = segkit.volumes.predict_volumes(
    "resunet.figshare", ["scan.nii.gz", "dicom/series_3", "data/imagesTs"], "masks", overlays=True
)
# masks/scan_mask.nii.gz, scan_mask.json, scan_montage.png; masks/series_3_mask.nii.gz, ...
# and one mask per case of imagesTs/ (case_0000.nii.gz, case_0001.nii.gz, ... are one case)
```

segkit's models are 2-D, so a volume is segmented one slice at a time:

1. it is read by `segkit.data.volumes.read_volume` (a case of several modalities, file by file,
   stacked as channels) and cut into slices along its axial axis (found from the affine) or the
   voxel axis given, each laid out as a viewer shows it;
2. its voxels are mapped to 8 bits by the volume's own percentile window (0.5th to 99.5th
   percentile to 0..255, each modality by its own: `segkit.data.volumes.map_to_uint8`), since
   the models read 8-bit images; models trained on the volume layout saw their slices mapped
   the same way (`segkit.data.volume_layout`);
3. each slice is then segmented as an image file would be: resized to the model, normalised as
   its weights say, run (with the model's test-time augmentation), brought back to the slice's
   size, thresholded (or the most probable class taken) and post-processed, as the model's
   `segkit.inference.InferenceSettings` say;
4. the slice masks are put back in the file's voxel order and written as ``<name>_mask.nii.gz``:
   ``uint8`` labels (0/1, or class indices) with the input's shape and affine (and, for a NIfTI
   input, the rest of its header geometry). A DICOM series gives a NIfTI aligned with it.

Beside each mask, ``<name>_mask.json`` records how it was made: the model, the axis, the
inference settings and the intensity windows. With ``overlays``, ``<name>_montage.png`` shows
the slices that hold a prediction, outlined as `segkit.visualize` draws them, each tile marked
with its index along the axis in the file (from 0).

`volume_pairs` serves `segkit.evaluate` on the volume layout: it segments (or reads the
predicted ``<case>_mask.nii.gz`` of) each volume once, gives its slices to the per-slice scores
and scores the whole volume in 3-D, with distances in millimetres from the voxel spacing
(`volume_summary`, `format_volumes`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from segkit import evaluation, ray_engine
from segkit._io import check_writable, write_json
from segkit.data import volume_layout, volumes
from segkit.data.classes import Classes, default_names
from segkit.data.preprocess import Preprocessing
from segkit.data.samples import Sample
from segkit.inference import Segmenter, segmenter_for
from segkit.postprocess import PostProcessing
from segkit.progress import Progress, note
from segkit.resize import resize_probabilities
from segkit.runs import RunFolder
from segkit.visualize import label_overlay, overlay, write_png

__all__ = [
    "MONTAGE_TILES",
    "SegmentedVolume",
    "format_volumes",
    "montage",
    "predict_volumes",
    "segment_volume",
    "volume_inputs",
    "volume_pairs",
    "volume_summary",
]

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
        windows: the intensity window mapped to 0..255, one per modality.
        threshold: the probability threshold used (one-channel models).
        class_names: the classes of a multi-class model (index = value), else None.
    """

    labels: np.ndarray
    images: np.ndarray
    masks: np.ndarray
    slicing: volumes.Slicing
    windows: tuple[tuple[float, float], ...]
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
        volume: the volume (`segkit.data.volumes.read_volume`), or a case of several
            modalities (`segkit.data.volumes.stack_modalities`): the model reads them as
            `segkit.data.volume_layout.pick_channels` says.
        axis: the voxel axis to cut slices along; None for the axial axis.
        threshold: probability above which a pixel is foreground; None takes the segmenter's.
        batch_size: slices per forward pass.
        progress: show the count of slices done, the rate and the time left on standard error.

    Raises:
        ValueError: a bad ``axis`` or ``threshold``, or a model that reads channels a volume
            does not have (a `segkit.data.DataError` naming the file).
    """
    threshold = segmenter.threshold if threshold is None else threshold
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
    slicing = volumes.slicing(volume, axis)
    mapped, windows = volumes.map_to_uint8(volume.array)
    stack = slicing.slices(mapped)
    images = volume_layout.pick_channels(
        stack if stack.ndim == 4 else stack[..., None], segmenter.prep.channels, volume.source
    )
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
        windows=windows,
        threshold=float(threshold),
        class_names=tuple(names) if names else None,
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


def _check_volume_mapping(model) -> None:
    """Refuse a run trained on volumes mapped to 8 bits otherwise than this segkit maps them."""
    if isinstance(model, Segmenter) or not Path(model).is_dir():
        return
    recorded = RunFolder(model).volume_mapping()
    if recorded and tuple(recorded["percentiles"]) != volumes.PERCENTILES:
        raise ValueError(
            f"{model} was trained on volumes mapped by the percentiles {recorded['percentiles']}, "
            f"but this segkit maps them by {list(volumes.PERCENTILES)}"
        )


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
    engine: str = "local",
    ray: ray_engine.RayOptions | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Segment NIfTI files, DICOM series folders and folders of NIfTI files; write a NIfTI
    label map per volume.

    Args:
        model: a model spec (see `segkit.inference`) or a loaded `Segmenter`.
        inputs: ``.nii`` / ``.nii.gz`` files, folders each holding one DICOM series, and
            folders of NIfTI files such as a volume layout's ``imagesTs/``, where
            ``<case>_0000``, ``<case>_0001``, ... are the modalities of one case
            (`segkit.data.volume_layout.group_modalities`).
        out: output folder; gets ``<name>_mask.nii.gz`` and ``<name>_mask.json`` per volume
            (``<name>``: the file name less ``.nii(.gz)``, the DICOM folder's name, or the
            case).
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
        engine: ``"local"`` runs here; ``"ray"`` segments each volume on a worker of a Ray
            cluster (`segkit.ray_engine`) and writes ``ray-summary.json`` to ``out``.
        ray: the cluster and worker pool of the ray engine (`segkit.ray_engine.RayOptions`).
        overwrite: the ray engine skips volumes whose ``<name>_mask.json`` exists (it is
            written last) unless this is True; the local engine always writes.

    Returns:
        The mask files written (the ray engine: also those skipped as complete).

    Raises:
        FileNotFoundError: an input that does not exist.
        ValueError: two volumes of the same name (their masks would overwrite each other).
        segkit.data.DataError: an input that is not a readable volume (the message names it).
    """
    ray_engine.check_engine(engine)
    cases = volume_inputs(inputs)
    _check_volume_mapping(model)
    changes = {"threshold": threshold, "tta": tta, "postprocess": postprocess}
    made = {"axis": axis, "batch_size": batch_size, "overlays": overlays}
    segmenter = segmenter_for(
        model,
        weights,
        random_weights=random_weights,
        precision=precision,
        defaults=defaults,
        **changes,
    )
    if engine == "ray":  # loaded here too, so that a bad spec fails here, in one line
        return _predict_on_ray(segmenter, cases, out, made, ray, overwrite, progress)
    out = check_writable(out)
    note(f"predict: {segmenter.cost('slice')}", enabled=progress)
    return [
        _write_volume(segmenter, name, paths, out, progress=progress, **made)
        for name, paths in cases.items()
    ]


def _write_volume(
    segmenter: Segmenter,
    name: str,
    paths: list[Path],
    out: Path,
    *,
    axis: int | None,
    batch_size: int,
    overlays: bool,
    progress: bool = False,
) -> Path:
    """Segment one volume and write its outputs (see `predict_volumes`), the JSON record
    last; returns the mask file."""
    volume = volumes.stack_modalities([volumes.read_volume(path) for path in paths])
    segmented = segment_volume(
        segmenter, volume, axis=axis, batch_size=batch_size, progress=progress
    )
    axis_used = segmented.slicing.axis
    mask_path = out / f"{name}_mask.nii.gz"
    low, high = volumes.PERCENTILES
    description = f"segkit labels; axis {axis_used}; intensity p{low}-p{high} to 0-255"
    volumes.write_labels(mask_path, segmented.labels, volume, description)
    picture = montage(segmented) if overlays else None
    if picture is not None:
        write_png(out / f"{name}_montage.png", picture)
    write_json(out / f"{name}_mask.json", _record(paths, segmenter, segmented, volume))
    return mask_path


def _predict_volume(segmenter: Segmenter, unit: dict) -> None:
    """The ray engine's work on one volume."""
    paths = [Path(p) for p in unit["paths"]]
    _write_volume(segmenter, unit["name"], paths, Path(unit["out"]), **unit["made"])


def _predict_on_ray(
    segmenter: Segmenter, cases: dict, out, made: dict, ray, overwrite, progress
) -> list[Path]:
    """`predict_volumes` on the ray engine: a volume per unit, complete volumes skipped."""
    out = check_writable(out).resolve()
    names = list(cases)
    masks = [out / f"{name}_mask.nii.gz" for name in names]
    todo = [
        i for i, name in enumerate(names) if overwrite or not (out / f"{name}_mask.json").is_file()
    ]
    units = [
        {
            "name": names[i],
            "paths": [str(Path(p).resolve()) for p in cases[names[i]]],
            "out": str(out),
            "made": made,
        }
        for i in todo
    ]
    outcomes, run = ray_engine.map_units(
        units,
        segmenter.loader(),
        _predict_volume,
        ray or ray_engine.RayOptions(),
        what="volumes",
        progress=progress,
    )
    inputs = [cases[name][0] for name in names]
    records = ray_engine.file_records(inputs, masks, todo, outcomes)
    ray_engine.remove_leftovers(out)
    summary = ray_engine.write_summary(
        out / ray_engine.SUMMARY_FILE, run, records, model=segmenter.name
    )
    ray_engine.check_failures(summary, out / ray_engine.SUMMARY_FILE)
    return masks


def volume_inputs(inputs: Iterable[str | Path]) -> dict[str, list[Path]]:
    """The volumes to segment, by name: each NIfTI file or DICOM folder alone, and the cases of
    each folder of NIfTI files, their modalities in channel order.

    Raises:
        FileNotFoundError: an input that does not exist.
        ValueError: two volumes of one name.
    """
    cases: dict[str, list[Path]] = {}
    for item in inputs:
        path = Path(item)
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
        if volumes.is_volume(path) or not volumes.nifti_files(path):
            found = {volumes.volume_name(path): [path]}  # read_volume says what is wrong
        else:
            found = volume_layout.group_modalities(volumes.nifti_files(path))
        for name, paths in found.items():
            if name in cases:
                raise ValueError(
                    f"inputs {cases[name][0]} and {paths[0]} share the name {name!r} (their "
                    "masks would overwrite each other)"
                )
            cases[name] = paths
    return cases


def _record(paths: list[Path], segmenter: Segmenter, segmented: SegmentedVolume, volume) -> dict:
    """How a mask was made, for the JSON beside it."""
    names = segmented.class_names or ("background", "foreground")
    return {
        "source": str(paths[0]),
        **({"modalities": [str(p) for p in paths]} if len(paths) > 1 else {}),
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
            "mapping": "percentile window to 0..255 (each modality by its own), then the "
            "model's own normalisation",
            "percentiles": list(volumes.PERCENTILES),
            "windows": [list(window) for window in segmented.windows],
            "normalisation": segmenter.prep.normalize,
        },
    }


#: Predicted masks of a case in a predictions folder, by the names tried in turn: segkit
#: predict's, then nnU-Net's (named as the case).
PREDICTION_NAMES = ("{case}_mask.nii.gz", "{case}_mask.nii", "{case}.nii.gz", "{case}.nii")
#: Most volumes `format_volumes` shows a row for; the report holds them all.
TABLE_VOLUMES = 20


def volume_pairs(
    samples: Sequence[Sample],
    scores: list[dict],
    *,
    segmenter: Segmenter | None = None,
    predictions: str | Path | None = None,
    threshold: float | None = None,
    batch_size: int = 8,
    classes: Classes | None = None,
    ignore_index: int | None = None,
) -> Iterator[tuple[Sample, np.ndarray, np.ndarray]]:
    """``(sample, predicted slice, true slice)`` for each slice of the volume layout among
    ``samples``, the way `segkit.reports.evaluate` scores images; each volume is also scored
    whole, in 3-D, into ``scores``.

    Each volume is read once. Its mask is `segment_volume`'s (the mask `segkit predict`
    writes), or read from ``predictions``: ``<case>_mask.nii.gz`` as `predict_volumes` names
    it, or ``<case>.nii.gz`` as nnU-Net does, with the image's shape and affine. Slices are
    given at the volume's own resolution. The 3-D score is `segkit.evaluation.score` of the
    whole label volumes with the voxel spacing from the affine, so HD95 and ASSD are in
    millimetres (label maps: `segkit.evaluation.score_classes`, then the mean over the classes
    present); voxels of ``ignore_index`` in the truth count as background in both. A volume
    only some of whose slices are among ``samples`` (slices of a slice-wise random split) gets
    no 3-D score.

    Args:
        samples: samples of the ``"volumes"`` layout (`segkit.data.find_samples`).
        scores: a list to which each volume's 3-D scores are appended as it is read: `score`'s
            keys and ``case``, ``image``, ``labels``, ``slices``, ``spacing`` (and ``classes``
            for label maps); see `volume_summary`.
        segmenter: the model; None when ``predictions`` is given.
        predictions: a folder of predicted label volumes.
        threshold: probability above which a voxel is foreground; None: the segmenter's.
        batch_size: slices per forward pass.
        classes: the classes of label maps; None: binary labels (0/1 or 0/255).
        ignore_index: a value of the true label maps left unscored.

    Raises:
        FileNotFoundError: the predictions folder, or a case's mask in it, is missing.
        DataError: a volume or mask that cannot be read or does not fit its image.
    """
    cases: dict[str, list[Sample]] = {}
    for sample in samples:
        cases.setdefault(sample.patient, []).append(sample)
    found = _prediction_files(Path(predictions), cases) if predictions is not None else {}
    truth_prep = Preprocessing.for_classes(
        classes, **({"ignore_index": ignore_index} if classes else {})
    )
    for case, members in cases.items():
        image, truth = volume_layout.read_case(members[0].modalities, members[0].mask)
        if segmenter is not None:
            predicted = segment_volume(
                segmenter, image, threshold=threshold, batch_size=batch_size
            ).labels
        else:
            labels = volumes.read_labels(found[case], image)
            predicted = volume_layout.mask_values(
                labels.array, found[case], Preprocessing.for_classes(classes)
            )
        true = volume_layout.mask_values(truth.array, members[0].mask, truth_prep)
        slicing = volumes.slicing(image)
        if len(members) == len(slicing.indices):
            scores.append(
                _score_volume(case, members[0], image, predicted, true, classes, ignore_index)
            )
        position = {int(index): p for p, index in enumerate(slicing.indices)}
        predicted_slices, true_slices = slicing.slices(predicted), slicing.slices(true)
        for sample in members:
            at = position[sample.slice]
            yield sample, predicted_slices[at], true_slices[at]


def _prediction_files(folder: Path, cases) -> dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"predictions folder {folder} does not exist")
    found, missing = {}, []
    for case in cases:
        names = [name.format(case=case) for name in PREDICTION_NAMES]
        path = next((folder / n for n in names if (folder / n).is_file()), None)
        if path is None:
            missing.append(names[0])
        found[case] = path
    if missing:
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise FileNotFoundError(
            f"predictions folder {folder} lacks {', '.join(missing[:10])}{more}"
        )
    return found


def _score_volume(case, sample, image, predicted, true, classes, ignore_index) -> dict:
    if ignore_index is not None:  # unlabelled voxels: background in both, never scored
        unlabelled = true == ignore_index
        predicted, true = np.where(unlabelled, 0, predicted), np.where(unlabelled, 0, true)
    record = {
        "case": case,
        "image": str(sample.image),
        "labels": str(sample.mask),
        "slices": int(image.shape[image.axial_axis]),
        "spacing": list(image.spacing),
    }
    if classes is None:
        return {**record, **evaluation.score(predicted, true, image.spacing)}
    by_class = evaluation.score_classes(predicted, true, classes.names, image.spacing)
    flat = {}
    for metric in evaluation.METRICS:  # the mean over the classes the volume holds
        values = np.array([s[metric] for s in by_class.values()], dtype=float)
        flat[metric] = float(np.nanmean(values)) if not np.isnan(values).all() else float("nan")
    for count in ("tp", "fp", "fn", "tn"):
        flat[count] = float(sum(s[count] for s in by_class.values()))
    return {**record, **flat, "classes": by_class}


def volume_summary(scores: list[dict]) -> dict:
    """The report entries of `volume_pairs`' 3-D scores: summary keys and one record per volume.

    Returns:
        ``n_volumes``; ``volume_dice_mean``, ``volume_dice_median``, ``volume_iou_mean``
        (means over volumes); ``volume_dice_pooled`` (Dice of every volume's voxels together;
        label maps: the mean over the classes of each class's); ``volume_hd95_mean_mm`` and
        ``volume_assd_mean_mm`` (millimetres, volumes without a distance left out and
        counted in ``volume_hd95_nan``); and ``volumes``, per volume: ``case``, ``image``,
        ``labels``, ``slices``, ``spacing_mm``, ``dice``, ``iou``, ``hd95_mm``, ``assd_mm``,
        ``precision``, ``recall`` (label maps: ``classes``, those per class).
    """
    summary = evaluation.summarize(scores)
    pooled = summary["dice_pooled"]
    if scores and "classes" in scores[0]:
        per_class = evaluation.summarize_classes([s["classes"] for s in scores])
        pooled = float(np.nanmean([c["dice_pooled"] for c in per_class.values()]))
    return {
        "n_volumes": len(scores),
        "volume_dice_mean": _clean(summary["dice"]["mean"]),
        "volume_dice_median": _clean(summary["dice"]["median"]),
        "volume_dice_pooled": _clean(pooled),
        "volume_iou_mean": _clean(summary["iou"]["mean"]),
        "volume_hd95_mean_mm": _clean(summary["hd95"]["mean"]),
        "volume_hd95_nan": summary["hd95"]["nan"],
        "volume_assd_mean_mm": _clean(summary["assd"]["mean"]),
        "volumes": [_volume_record(s) for s in scores],
    }


def _volume_record(score: dict) -> dict:
    distances = {"hd95": "hd95_mm", "assd": "assd_mm"}
    record = {
        "case": score["case"],
        "image": score["image"],
        "labels": score["labels"],
        "slices": score["slices"],
        "spacing_mm": score["spacing"],
    }
    for key in ("dice", "iou", "hd95", "assd", "precision", "recall"):
        record[distances.get(key, key)] = _clean(score[key])
    if "classes" in score:
        record["classes"] = {
            name: {distances.get(k, k): _clean(s[k]) for k in ("dice", "iou", "hd95", "assd")}
            for name, s in score["classes"].items()
        }
    return record


def _clean(value: float) -> float | None:
    """JSON has no NaN: undefined scores (a distance to an empty mask) become null."""
    return None if value is None or math.isnan(value) else float(value)


def format_volumes(report: dict) -> list[str]:
    """The 3-D rows of a report's table: all volumes, then each (up to `TABLE_VOLUMES`)."""
    volumes_scored = report["volumes"]
    rows = [
        (
            "all volumes",
            sum(v["slices"] for v in volumes_scored),
            report["volume_dice_mean"],
            report["volume_iou_mean"],
            report["volume_hd95_mean_mm"],
            report["volume_assd_mean_mm"],
        )
    ]
    rows += [
        (v["case"], v["slices"], v["dice"], v["iou"], v["hd95_mm"], v["assd_mm"])
        for v in volumes_scored[:TABLE_VOLUMES]
    ]
    width = max(12, *(len(row[0]) for row in rows))

    def cell(value, digits=3):
        return "-" if value is None else f"{value:.{digits}f}"

    header = f"{'3-D':<{width}} {'slices':>6} {'dice':>6} {'iou':>6} {'hd95 mm':>7} {'assd mm':>7}"
    lines = [header]
    for name, slices, dice, iou, hd95, assd in rows:
        lines.append(
            f"{name:<{width}} {slices:>6} {cell(dice):>6} {cell(iou):>6} {cell(hd95, 2):>7} "
            f"{cell(assd, 2):>7}"
        )
    more = len(volumes_scored) - TABLE_VOLUMES
    lines.append(
        f"(3-D: each volume scored whole; all = mean over the {len(volumes_scored)} volumes, "
        f"pooled dice {cell(report['volume_dice_pooled'])}; hd95 and assd in mm from the voxel "
        "spacing, volumes with one empty mask left out"
        + (f"; {more} more volumes in the report)" if more > 0 else ")")
    )
    return lines
