"""Scoring a model, or masks made elsewhere, against a data set's true masks.

The report (a dict, written as JSON) has these keys:

=================  ===========================================================================
``n_images``       number of images scored
``resolution``     ``"original"`` (each ground truth's own size; predictions resized to it with
                   nearest neighbour) or ``"model"`` (the model's processing size)
``dice_mean``      mean of per-image Dice (images with both masks empty count as 1.0)
``dice_median``    median of per-image Dice
``dice_pooled``    Dice of all pixels of all images taken together
``iou_mean``       mean of per-image IoU; ``iou_pooled`` likewise pooled
``hd95_mean``      mean 95th-percentile Hausdorff distance in pixels; images with both masks
                   empty count as 0, images with exactly one empty mask are left out
                   (``hd95_nan`` counts them); ``assd_mean`` likewise
``precision_mean`` and ``recall_mean``: means of per-image precision and recall
``by_label``       the same summary per tumour type, when the data has labels
``images``         one record per image: ``file``, ``key``, ``label``, ``dice``, ``iou``,
                   ``hd95``, ``assd``, ``precision``, ``recall``
``model``          what produced the masks; ``data``: the data folder; ``threshold``
=================  ===========================================================================

Every report starts with ``"format": "segkit.evaluation"`` and ``"format_version"``
(`REPORT_FORMAT_VERSION`); `read_report` refuses a file of another format or version. Version 2
added the format keys themselves and, for people looking at the cases:

* ``weights_sha256`` (the SHA-256 of the weights that made the masks: a run's ``best.keras``,
  a ``.keras`` or ``.onnx`` file, or shipped weights; absent for masks made elsewhere),
  ``precision``, ``manifest``, ``subset`` and ``segkit`` (the version that scored);
* ``n_empty_predictions`` (nothing predicted where the truth holds foreground),
  ``n_missed`` (truth holds foreground, the prediction has none of it: includes the empty
  predictions) and ``n_false_alarms`` (foreground predicted, none true), also per label;
* per image ``patient``, ``slice`` (volumes), ``true_pixels`` and ``predicted_pixels``
  (foreground pixels of the true and predicted masks, all classes together);
* with ``thumbnails`` (a folder): per image ``thumbnail``, the file name of a small picture
  of the case in that folder (`segkit.gallery`), and ``thumbnails``, the folder.

A multi-class report (label maps: a multi-class model, ``num_classes``, ``classes`` or a
``classes.json``) keeps these keys and adds ``"classes": {name: {"dice_mean", "dice_pooled",
"iou_mean", "hd95_mean", "assd_mean", "hd95_nan", "n_images"}}`` for the foreground classes
(see `segkit.evaluation.summarize_classes`: an image without the class in truth or prediction
is left out of that class's means) and ``"classes": {name: {"dice", "iou", "hd95"}}`` in each
entry of ``"images"``. Then ``dice_mean``, ``dice_pooled``, ``iou_mean``, ``iou_pooled`` and
``hd95_mean`` are means over the foreground classes of theirs; the other summary keys and each
image's flat scores describe the mean over the classes the image holds.
``include_background`` is ``false``: background is not scored.

Regions (``regions="tumour=1,2,3;glioma=2"``) are scored the same way, each region being the
pixels whose label is one of its labels (`segkit.masks.regions_from_labels` of the true label
map and of the predicted one): ``"classes"`` then holds one entry per region, and
``"regions"`` says which labels each one holds.

With ``ignore_index`` (e.g. 255 = unlabelled), pixels of that value in a true label map count
as background in both truth and prediction, so they add to no class's counts.

On the volume layout (``imagesTr/``, ``labelsTr/``) each slice is an image of the keys above,
and each volume is also scored whole, in 3-D, with distances in millimetres from its voxel
spacing (`segkit.volumes.volume_pairs`): the report adds ``n_volumes``, ``volume_dice_mean``,
``volume_dice_median``, ``volume_dice_pooled``, ``volume_iou_mean``, ``volume_hd95_mean_mm``,
``volume_hd95_nan``, ``volume_assd_mean_mm`` and ``volumes``, one record per volume (see
`segkit.volumes.volume_summary`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

import segkit
from segkit import data, evaluation, ray_engine
from segkit._io import write_json
from segkit.data.classes import Regions, parse_regions
from segkit.data.samples import find_image_file
from segkit.gallery import Thumbnails
from segkit.inference import Segmenter, load_model, names_a_path, warn_unusual
from segkit.masks import regions_from_labels
from segkit.progress import Progress, note
from segkit.resize import resize_labels, resize_mask, resize_nearest, resize_probabilities
from segkit.volumes import format_volumes, volume_pairs, volume_summary

PER_IMAGE = ("dice", "iou", "hd95", "assd", "precision", "recall")

#: What every report says it is, and the version of its keys (see the module docstring).
REPORT_FORMAT = "segkit.evaluation"
REPORT_FORMAT_VERSION = 2


def evaluate(
    model: str | Path | Segmenter | None,
    data_dir: str | Path,
    out: str | Path | None = None,
    *,
    weights: str | None = None,
    predictions: str | Path | None = None,
    layout: str = "auto",
    manifest: str | Path | None = None,
    subset: str | None = None,
    at_model_size: bool = False,
    threshold: float | None = None,
    batch_size: int = 8,
    on_problem: str = "error",
    random_weights: bool = False,
    progress: bool = False,
    precision: str = "float32",
    num_classes: int | None = None,
    classes: str | list[str] | None = None,
    regions: str | dict | Regions | None = None,
    ignore_index: int | None = None,
    engine: str = "local",
    ray: ray_engine.RayOptions | None = None,
    thumbnails: str | Path | Thumbnails | None = None,
) -> dict:
    """Score a model (or a folder of predicted masks) on a data folder.

    Args:
        model: a model spec (see `segkit.inference`) or a `Segmenter`; None when
            ``predictions`` is given.
        data_dir: data folder with true masks, any layout `segkit.data.find_samples` reads.
        out: where to write the JSON report (atomically); None writes nothing.
        weights: weights tag when ``model`` is a registry name.
        predictions: folder of mask files made elsewhere, one per image, named like the data's
            masks (``12_mask.png``) or like the images (``12.png``).
        layout: the data's layout (``"auto"`` detects it).
        manifest: a split manifest (``split.json`` of a run); with ``subset``, score only
            ``"train"``, ``"val"`` or ``"test"`` samples.
        subset: which part of the manifest to score.
        at_model_size: score at the model's processing size instead of each ground truth's.
        threshold: probability above which a pixel is foreground; None takes the model's own
            (shipped weights carry one; 0.5 elsewhere).
        batch_size: images per forward pass.
        on_problem: ``"skip"`` leaves out images without a mask (and other problems
            `segkit.data.find_samples` reports) instead of failing.
        random_weights: allow a bare registry name, which means untrained weights.
        progress: show the count, rate and time left on standard error.
        precision: ``"bfloat16"`` runs a Keras model in bfloat16 (see `segkit.load_model`).
        num_classes: score label maps of this many classes (a multi-class model, or a
            ``classes.json`` beside the data, says so without it).
        classes: ``"tumour-type"`` or the class names (see `segkit.data.resolve_classes`).
        regions: score these regions of the label maps (``"tumour=1,2,3;glioma=2"``, see
            `segkit.data.classes.parse_regions`) instead of the classes, from the label maps
            the model (or the predictions folder) gives; a model trained on regions scores its
            own without it.
        ignore_index: a value of the true label maps (e.g. 255) whose pixels are not scored.
        engine: ``"local"`` runs here; ``"ray"`` makes and scores the masks on the workers of
            a Ray cluster (`segkit.ray_engine`: a batch of images or a volume each), and sums
            them up here into the same report. Needs a model spec or a `Segmenter` from
            `segkit.load_model`; masks made elsewhere (``predictions``) are scored here.
        ray: the cluster and worker pool of the ray engine (`segkit.ray_engine.RayOptions`).
        thumbnails: draw a small picture of each case (image, true and predicted outlines)
            while its masks are in memory: a folder to write them to (named in the report),
            or a `segkit.gallery.Thumbnails` that keeps them in memory for a page.

    Returns:
        The report; see the module docstring for its keys.
    """
    if (model is None) == (predictions is None):
        raise ValueError("give either a model or a predictions folder, not both or neither")
    ray_engine.check_engine(engine)
    if at_model_size and predictions is not None:
        raise ValueError("at_model_size needs a model; predictions are scored at their own size")
    samples = data.find_samples(data_dir, layout=layout, on_problem=on_problem)
    samples = _select(samples, manifest, subset)
    flagged: list[tuple[str, str]] = []  # inputs unlike the model's training images
    if predictions is not None:
        found = data.resolve_classes(data_dir, num_classes, classes)
        regions = _check_regions(regions, found, ignore_index)
        pairs = _prediction_pairs(samples, Path(predictions), found, ignore_index)
        source = str(predictions)
    else:
        if not isinstance(model, Segmenter):
            model = load_model(model, weights, random_weights=random_weights, precision=precision)
        threshold = model.threshold if threshold is None else threshold
        note(f"evaluate: {model.with_settings(threshold=threshold).cost()}", enabled=progress)
        found = _model_classes(model, data_dir, num_classes, classes)
        regions = _check_regions(model.regions if regions is None else regions, found, ignore_index)
        pairs = _model_pairs(
            model,
            samples,
            threshold,
            at_model_size,
            batch_size,
            flagged,
            found,
            ignore_index,
        )
        source = model.name
    volume_scores: list[dict] = []
    on_volumes = bool(samples) and samples[0].layout == "volumes"
    if on_volumes:  # slices of volumes: read a volume at a time
        if at_model_size:
            raise ValueError("at_model_size: volumes are scored at their own voxels")
        if regions is not None:
            raise ValueError("regions: volumes are scored by their classes, not by regions")
    on_ray = engine == "ray" and predictions is None  # masks made elsewhere are scored here
    if on_ray:
        scoring = {"threshold": threshold, "at_model_size": at_model_size, "classes": found}
        scoring.update(regions=regions, ignore_index=ignore_index, batch_size=batch_size)
        scored, by_class = _score_on_ray(
            model, samples, on_volumes, scoring, ray, progress, flagged, volume_scores
        )
    elif on_volumes:
        pairs = volume_pairs(
            samples,
            volume_scores,
            segmenter=model if predictions is None else None,
            predictions=predictions,
            threshold=threshold,
            batch_size=batch_size,
            classes=found,
            ignore_index=ignore_index,
        )
    if thumbnails is not None and not isinstance(thumbnails, Thumbnails):
        thumbnails = Thumbnails(thumbnails)
    class_names = None if found is None or regions is not None else found.names
    pictures = []
    if on_ray and thumbnails is not None:
        raise ValueError(
            "case pictures (--html, --assets) are drawn where the masks are: use --engine local"
        )
    if not on_ray:
        shown = Progress(len(samples), "images", "evaluate", enabled=progress)
        scored, by_class = [], []
        for sample, predicted, true in pairs:
            if ignore_index is not None:  # unlabelled pixels: background in both, never scored
                unlabelled = true == ignore_index
                predicted, true = np.where(unlabelled, 0, predicted), np.where(unlabelled, 0, true)
            if thumbnails is not None:
                pictures.append(thumbnails.add(sample, predicted, true, class_names))
            scores, class_scores = _score_pair(predicted, true, found, regions, ignore_index)
            scored.append((sample, scores))
            if class_scores is not None:
                by_class.append(class_scores)
            shown.update()
    if predictions is None:
        warn_unusual(model, flagged, len(samples))
    report = {
        "format": REPORT_FORMAT,
        "format_version": REPORT_FORMAT_VERSION,
        "segkit": segkit.__version__,
        "model": source,
        "data": str(data_dir),
        "manifest": None if manifest is None else str(manifest),
        "subset": subset,
        "resolution": "model" if at_model_size else "original",
        "threshold": threshold,
        # What made the masks: the model's TTA and post-processing, at the threshold used.
        **(
            {
                "inference": {**model.settings.to_dict(), "threshold": threshold},
                "precision": model.precision,
                "weights_sha256": _weights_checksum(model.name),
            }
            if predictions is None
            else {}
        ),
        **_summary([scores for _, scores in scored]),
    }
    if found is not None:
        report.update(_class_summary(by_class))
    if volume_scores:
        report.update(volume_summary(volume_scores))
    if regions is not None:
        report["regions"] = {
            name: list(labels) for name, labels in zip(regions.names, regions.labels, strict=True)
        }
    labels = sorted({s.label_name for s, _ in scored if s.label_name is not None})
    if labels:
        report["by_label"] = {
            label: _summary([scores for s, scores in scored if s.label_name == label])
            for label in labels
        }
    report["images"] = [
        {
            "file": str(s.image),
            "key": s.key,
            "label": s.label_name,
            "patient": s.patient,
            **({"slice": s.slice} if s.slice is not None else {}),
            **{k: _clean(scores[k]) for k in PER_IMAGE},
            "true_pixels": int(scores["tp"] + scores["fn"]),
            "predicted_pixels": int(scores["tp"] + scores["fp"]),
        }
        for s, scores in scored
    ]
    if thumbnails is not None:
        for entry, picture in zip(report["images"], pictures):
            entry["thumbnail"] = picture
        if thumbnails.folder is not None:
            report["thumbnails"] = str(thumbnails.folder)
    for entry, classes_scores in zip(report["images"], by_class):
        entry["classes"] = {
            name: {k: _clean(v[k]) for k in ("dice", "iou", "hd95")}
            for name, v in classes_scores.items()
        }
    if out is not None:
        write_json(out, report)
    return report


def _score_pair(predicted, true, classes, regions, ignore_index) -> tuple[dict, dict | None]:
    """One image's flat scores, and its per-class (or per-region) scores of label maps."""
    if ignore_index is not None:  # unlabelled pixels: background in both, never scored
        unlabelled = true == ignore_index
        predicted, true = np.where(unlabelled, 0, predicted), np.where(unlabelled, 0, true)
    if classes is None:
        return evaluation.score(predicted, true), None
    if regions is not None:
        class_scores = _score_regions(predicted, true, regions)
    else:
        class_scores = evaluation.score_classes(predicted, true, classes.names)
    return _mean_over_classes(class_scores), class_scores


def _score_unit(segmenter: Segmenter, unit: dict) -> dict:
    """The ray engine's work on a batch of images or a volume's slices: the scores of each
    image (`_score_pair`), the volume's 3-D scores and the images unlike the training ones."""
    samples, scoring = unit["samples"], unit["scoring"]
    volume_scores, flagged = [], []
    classes, ignore_index = scoring["classes"], scoring["ignore_index"]
    if unit["volume"]:
        pairs = volume_pairs(
            samples,
            volume_scores,
            segmenter=segmenter,
            threshold=scoring["threshold"],
            batch_size=scoring["batch_size"],
            classes=classes,
            ignore_index=ignore_index,
        )
    else:
        pairs = _model_pairs(
            segmenter,
            samples,
            scoring["threshold"],
            scoring["at_model_size"],
            scoring["batch_size"],
            flagged,
            classes,
            ignore_index,
        )
    scores = [
        _score_pair(predicted, true, classes, scoring["regions"], ignore_index)
        for _, predicted, true in pairs
    ]
    return {"scores": scores, "volume_scores": volume_scores, "flagged": flagged}


def _score_on_ray(segmenter, samples, on_volumes, scoring, ray, progress, flagged, volume_scores):
    """`evaluate`'s masks and scores on the ray engine, a unit per volume or per batch of
    images (the batches `_model_pairs` runs, so each forward pass is the local one); returns
    ``scored`` and ``by_class`` as the local loop makes them, in the same order."""
    if on_volumes:
        cases: dict[str, list] = {}
        for sample in samples:
            cases.setdefault(sample.patient, []).append(sample)
        groups = list(cases.values())
    else:
        size = scoring["batch_size"]
        groups = [samples[start : start + size] for start in range(0, len(samples), size)]
    units = [{"samples": g, "volume": on_volumes, "scoring": scoring} for g in groups]
    outcomes, _ = ray_engine.map_units(
        units,
        segmenter.loader(),
        _score_unit,
        ray or ray_engine.RayOptions(),
        sizes=[len(g) for g in groups],
        what="images",
        label="evaluate",
        progress=progress,
    )
    failed = [(g, o) for g, o in zip(groups, outcomes) if o["status"] == "failed"]
    if failed:
        group, outcome = failed[0]
        raise ValueError(
            f"{len(failed)} of {len(units)} units failed on the ray engine (first, from "
            f"{group[0].image}: {outcome['error']})"
        )
    scored, by_class = [], []
    for group, outcome in zip(groups, outcomes):
        result = outcome["result"]
        for sample, (scores, class_scores) in zip(group, result["scores"]):
            scored.append((sample, scores))
            if class_scores is not None:
                by_class.append(class_scores)
        volume_scores.extend(result["volume_scores"])
        flagged.extend(result["flagged"])
    return scored, by_class


def read_report(path: str | Path) -> dict:
    """A report written by `evaluate`, checked to be of this segkit's format.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not JSON, or a report of another format or an older version, naming it.
    """
    path = Path(path)
    try:
        report = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not a JSON file: {exc}") from None
    if not isinstance(report, dict) or report.get("format") != REPORT_FORMAT:
        raise ValueError(
            f'{path} is not a segkit evaluation report (no "format": "{REPORT_FORMAT}")'
        )
    version = report.get("format_version")
    if version != REPORT_FORMAT_VERSION:
        raise ValueError(
            f"{path} is an evaluation report of format version {version}; this segkit reads "
            f"version {REPORT_FORMAT_VERSION}: score the model again with `segkit evaluate`"
        )
    return report


def _weights_checksum(name: str) -> str | None:
    """The SHA-256 of the weights a model spec names: a run's best.keras, a model file, or
    shipped weights (checked against it when they were loaded); None for a bare name."""
    from segkit.models import pretrained, split_name

    if names_a_path(name):
        path = Path(name)
        path = path / "best.keras" if path.is_dir() else path
        return pretrained.sha256(path) if path.is_file() else None
    model, tag = split_name(name)
    entry = pretrained.PRETRAINED.get((model, tag))
    return None if entry is None else entry.sha256


def _select(samples, manifest, subset):
    if subset is None:
        if manifest is not None:
            raise ValueError("a manifest needs a subset to score: train, val or test")
        return samples
    if manifest is None:
        raise ValueError("subset needs a manifest (a run's split.json)")
    names = ("train", "val", "test")
    if subset not in names:
        raise ValueError(f"subset must be one of {names}, got {subset!r}")
    chosen = data.Split.load(manifest).select(samples)[names.index(subset)]
    if not chosen:
        raise ValueError(f"manifest {manifest} has no {subset} samples in this data folder")
    return chosen


def _model_classes(segmenter: Segmenter, data_dir, num_classes, classes) -> data.Classes | None:
    """The classes a model's label maps are scored by: the model's own, else the data's."""
    found = data.resolve_classes(data_dir, num_classes, classes)
    channels = segmenter.prep.num_classes
    if channels is None:
        if found is not None:
            raise ValueError(
                f"{segmenter.name} is a binary model; it cannot be scored on "
                f"{found.num_classes} classes"
            )
        return None
    names = segmenter.class_names or (
        found.names if found else data.classes.default_names(channels)
    )
    if len(names) != channels:
        raise ValueError(f"{segmenter.name} predicts {channels} classes but {len(names)} are named")
    return data.Classes(tuple(names), segmenter.prep.class_source)


def _check_regions(regions, classes: data.Classes | None, ignore_index) -> Regions | None:
    """The regions to score (None: the classes), checked against the label maps' classes."""
    if classes is None and (regions is not None or ignore_index is not None):
        raise ValueError(
            "regions and ignore_index are for label maps: give num_classes, classes or a "
            "classes.json beside the data"
        )
    return None if regions is None else parse_regions(regions, classes.names)


def _score_regions(pred, true, regions: Regions) -> dict[str, dict[str, float]]:
    """`segkit.evaluation.score` of each region of a predicted label map against the true one,
    with the empty-class policy of `segkit.evaluation.score_classes`."""
    pred_regions = regions_from_labels(pred, regions.labels)
    true_regions = regions_from_labels(true, regions.labels)
    return {
        name: evaluation.score(pred_regions[..., r], true_regions[..., r], empty="skip")
        for r, name in enumerate(regions.names)
    }


def _read_truth(sample, classes: data.Classes | None, ignore_index: int | None = None):
    if classes is None:
        return data.read_mask(sample)
    return data.read_mask(
        sample,
        num_classes=classes.num_classes,
        class_source=classes.source,
        ignore_index=ignore_index,
    )


def _prediction_pairs(
    samples, folder: Path, classes: data.Classes | None = None, ignore_index: int | None = None
) -> Iterator:
    if not folder.is_dir():
        raise FileNotFoundError(f"predictions folder {folder} does not exist")
    missing = []
    found = []
    for sample in samples:
        match = find_image_file(folder, [f"{sample.key}_mask", sample.key])
        if match is None:
            missing.append(f"{sample.key}_mask.png")
        found.append((sample, match))
    if missing:
        shown = ", ".join(missing[:10]) + (
            f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        )
        raise FileNotFoundError(f"predictions folder {folder} lacks {shown}")
    for sample, path in found:
        true = _read_truth(sample, classes, ignore_index)
        predicted = data.read_mask_file(path, classes and classes.num_classes)
        yield sample, resize_nearest(predicted, true.shape), true


def _model_pairs(
    segmenter: Segmenter,
    samples,
    threshold,
    at_model_size,
    batch_size,
    flagged: list,
    classes: data.Classes | None = None,
    ignore_index: int | None = None,
) -> Iterator:
    values = {}
    if classes is not None:
        values = {"num_classes": classes.num_classes, "class_source": classes.source}
        values["ignore_index"] = ignore_index
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        pairs = [data.read_pair(s, segmenter.prep.channels, **values) for s in chunk]
        probabilities = segmenter.predict([image for image, _ in pairs])
        for sample, (image, true), probs in zip(chunk, pairs, probabilities):
            if why := segmenter.unusual(image):
                flagged.append((sample.image.name, why))
            # The same masks `segkit.predict` writes: probabilities (averaged over the
            # settings' TTA) resized, then thresholded and post-processed by the settings.
            if at_model_size:
                resize = resize_mask if classes is None else resize_labels
                true = resize(true, segmenter.prep.size)
            else:
                probs = resize_probabilities(probs, true.shape)
            yield sample, segmenter.to_mask(probs, threshold), true


def _clean(value: float) -> float | None:
    """JSON has no NaN: undefined scores (e.g. HD95 with an empty mask) become null."""
    return None if math.isnan(value) else float(value)


def _summary(scores: list[dict]) -> dict:
    """The report's flat summary keys from `segkit.evaluation.summarize`."""
    summary = evaluation.summarize(scores)
    return {
        "n_images": summary["images"],
        "dice_mean": _clean(summary["dice"]["mean"]),
        "dice_median": _clean(summary["dice"]["median"]),
        "dice_std": _clean(summary["dice"]["std"]),
        "dice_pooled": _clean(summary["dice_pooled"]),
        "iou_mean": _clean(summary["iou"]["mean"]),
        "iou_pooled": _clean(summary["iou_pooled"]),
        "hd95_mean": _clean(summary["hd95"]["mean"]),
        "hd95_nan": summary["hd95"]["nan"],
        "assd_mean": _clean(summary["assd"]["mean"]),
        "precision_mean": _clean(summary["precision"]["mean"]),
        "recall_mean": _clean(summary["recall"]["mean"]),
        # Whole images gone wrong: counted from each image's pixel counts.
        "n_empty_predictions": sum(s["tp"] + s["fp"] == 0 and s["fn"] > 0 for s in scores),
        "n_missed": sum(s["tp"] == 0 and s["fn"] > 0 for s in scores),
        "n_false_alarms": sum(s["tp"] + s["fn"] == 0 and s["fp"] > 0 for s in scores),
    }


def _mean_over_classes(class_scores: dict[str, dict]) -> dict[str, float]:
    """One image's flat scores from its per-class ones: each metric's mean over the classes
    the image holds (NaN when it holds none), pixel counts summed."""
    flat = {}
    for metric in evaluation.METRICS:
        values = np.array([s[metric] for s in class_scores.values()], dtype=float)
        present = values[~np.isnan(values)]
        flat[metric] = float(present.mean()) if present.size else float("nan")
    for count in ("tp", "fp", "fn", "tn"):
        flat[count] = float(sum(s[count] for s in class_scores.values()))
    return flat


def _class_summary(by_class: list[dict]) -> dict:
    """The per-class summary, and the top-level means over the foreground classes."""
    classes = evaluation.summarize_classes(by_class)
    means = {}
    for key, over in (
        ("dice_mean", "dice_mean"),
        ("dice_pooled", "dice_pooled"),
        ("iou_mean", "iou_mean"),
        ("hd95_mean", "hd95_mean"),
    ):
        values = np.array([c[over] for c in classes.values()], dtype=float)
        present = values[~np.isnan(values)]
        means[key] = _clean(float(present.mean())) if present.size else None
    iou_pooled = [c["dice_pooled"] / (2 - c["dice_pooled"]) for c in classes.values()]
    iou_pooled = [v for v in iou_pooled if not math.isnan(v)]
    means["iou_pooled"] = float(np.mean(iou_pooled)) if iou_pooled else None
    return {
        **means,
        "include_background": False,
        "classes": {
            name: {k: v if k in ("n_images", "hd95_nan") else _clean(v) for k, v in c.items()}
            for name, c in classes.items()
        },
    }


def format_table(report: dict) -> str:
    """A short plain-text table of a report: overall, per class (multi-class) and per label."""
    by_label = list(report.get("by_label", {}).items())
    if "classes" in report:  # tumour types can be both classes and labels: say which row is which
        by_label = [(f"{name} slices", summary) for name, summary in by_label]
    rows = [("all", report)] + list(report.get("classes", {}).items()) + by_label
    width = max(12, *(len(name) for name, _ in rows))

    def cell(value, digits=3):
        return "-" if value is None else f"{value:.{digits}f}"

    # HD95 in pixels: on volume data too, beside the 3-D table's millimetres.
    header = f"{'images':>6} {'dice':>6} {'pooled':>6} {'iou':>6} {'hd95 px':>7} {'n/a':>4}"
    lines = [f"{'':<{width}} {header}"]
    for name, s in rows:
        lines.append(
            f"{name:<{width}} {s['n_images']:>6} {cell(s['dice_mean']):>6} "
            f"{cell(s['dice_pooled']):>6} {cell(s['iou_mean']):>6} {cell(s['hd95_mean'], 2):>7} "
            f"{s['hd95_nan']:>4}"
        )
    if "regions" in report:
        lines.append(
            "(regions: images = images holding the region in truth or prediction, the others "
            "left out of its means; all = mean over the regions)"
        )
    elif "classes" in report:
        lines.append(
            "(classes: images = images holding the class in truth or prediction, the others "
            "left out of its means; background not scored; all = mean over the classes)"
        )
    lines.append(
        f"(scored at {report['resolution']} resolution; dice = per-image mean; n/a = images "
        "without an HD95, left out of its mean: one of prediction and truth is empty)"
    )
    if report.get("volumes"):
        lines += format_volumes(report)
    return "\n".join(lines)
