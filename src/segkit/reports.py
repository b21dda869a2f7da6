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
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

from segkit import data, evaluation
from segkit._io import write_json
from segkit.data.samples import find_image_file
from segkit.inference import Segmenter, load_model, warn_unusual
from segkit.masks import to_mask
from segkit.progress import Progress
from segkit.resize import resize_mask, resize_nearest, resize_probabilities

PER_IMAGE = ("dice", "iou", "hd95", "assd", "precision", "recall")


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

    Returns:
        The report; see the module docstring for its keys.
    """
    if (model is None) == (predictions is None):
        raise ValueError("give either a model or a predictions folder, not both or neither")
    if at_model_size and predictions is not None:
        raise ValueError("at_model_size needs a model; predictions are scored at their own size")
    samples = data.find_samples(data_dir, layout=layout, on_problem=on_problem)
    samples = _select(samples, manifest, subset)
    flagged: list[tuple[str, str]] = []  # inputs unlike the model's training images
    if predictions is not None:
        pairs = _prediction_pairs(samples, Path(predictions))
        source = str(predictions)
    else:
        if not isinstance(model, Segmenter):
            model = load_model(model, weights, random_weights=random_weights, precision=precision)
        threshold = model.threshold if threshold is None else threshold
        pairs = _model_pairs(model, samples, threshold, at_model_size, batch_size, flagged)
        source = model.name
    shown = Progress(len(samples), "images", "evaluate", enabled=progress)
    scored = []
    for sample, predicted, true in pairs:
        scored.append((sample, evaluation.score(predicted, true)))
        shown.update()
    if predictions is None:
        warn_unusual(model, flagged, len(samples))
    report = {
        "model": source,
        "data": str(data_dir),
        "resolution": "model" if at_model_size else "original",
        "threshold": threshold,
        **_summary([scores for _, scores in scored]),
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
            **{k: _clean(scores[k]) for k in PER_IMAGE},
        }
        for s, scores in scored
    ]
    if out is not None:
        write_json(out, report)
    return report


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


def _prediction_pairs(samples, folder: Path) -> Iterator:
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
        true = data.read_mask(sample)
        predicted = data.read_mask_file(path)
        yield sample, resize_nearest(predicted, true.shape), true


def _model_pairs(
    segmenter: Segmenter, samples, threshold, at_model_size, batch_size, flagged: list
) -> Iterator:
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        pairs = [data.read_pair(s, segmenter.prep.channels) for s in chunk]
        probabilities = segmenter.predict([image for image, _ in pairs])
        for sample, (image, true), probs in zip(chunk, pairs, probabilities):
            if why := segmenter.unusual(image):
                flagged.append((sample.image.name, why))
            # The same masks `segkit.predict` writes: probabilities resized, then thresholded.
            if at_model_size:
                true = resize_mask(true, segmenter.prep.size)
            else:
                probs = resize_probabilities(probs, true.shape)
            yield sample, to_mask(probs, threshold), true


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
    }


def format_table(report: dict) -> str:
    """A short plain-text table of a report, overall and per label."""
    rows = [("all", report)] + list(report.get("by_label", {}).items())

    def cell(value, digits=3):
        return "-" if value is None else f"{value:.{digits}f}"

    lines = [
        f"{'':<12} {'images':>6} {'dice':>6} {'pooled':>6} {'iou':>6} {'hd95':>7} {'n/a':>4}",
    ]
    for name, s in rows:
        lines.append(
            f"{name:<12} {s['n_images']:>6} {cell(s['dice_mean']):>6} "
            f"{cell(s['dice_pooled']):>6} {cell(s['iou_mean']):>6} {cell(s['hd95_mean'], 2):>7} "
            f"{s['hd95_nan']:>4}"
        )
    lines.append(
        f"(scored at {report['resolution']} resolution; dice = per-image mean; n/a = images "
        "without an HD95, left out of its mean: one of prediction and truth is empty)"
    )
    return "\n".join(lines)
