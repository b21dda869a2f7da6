"""Checking a data folder before training: what is there and everything that is wrong with it."""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segkit.data import volume_layout, volumes
from segkit.data.classes import Classes, resolve_classes
from segkit.data.errors import DataError, Problem
from segkit.data.preprocess import Preprocessing, read_pair
from segkit.data.samples import Sample, scan


@dataclass
class InspectionReport:
    """What `inspect` found in a data folder.

    Attributes:
        root: the folder inspected.
        layout: the layout read (detected or given).
        n_pairs: image/mask pairs found (complete pairs, readable or not); for volumes, their
            slices.
        n_patients: distinct patients, or ``None`` where the layout has no patient IDs.
        n_volumes: for volumes, how many complete cases were found; else ``None``.
        image_sizes: ``{"WxH": count}`` of the readable images.
        mask_coverage: foreground fraction of the readable masks: ``mean``, ``min``, ``max``, and
            ``empty`` (masks without foreground).
        labels: ``{label_name or label: count}`` where labels are known.
        classes: for a multi-class data set, ``{class name: {"coverage": mean share of an
            image's pixels, "images": images holding the class}}``, background included.
        problems: every missing, extra, duplicate, unreadable, mismatched or non-binary file.
    """

    root: str
    layout: str
    n_pairs: int = 0
    n_patients: int | None = None
    image_sizes: dict[str, int] = field(default_factory=dict)
    mask_coverage: dict[str, float | int] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    classes: dict[str, dict[str, float | int]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    n_volumes: int | None = None

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def to_dict(self) -> dict:
        """The report as JSON-ready data."""
        return {
            "root": self.root,
            "layout": self.layout,
            "n_pairs": self.n_pairs,
            "n_patients": self.n_patients,
            **({"n_volumes": self.n_volumes} if self.n_volumes is not None else {}),
            "image_sizes": dict(self.image_sizes),
            "mask_coverage": dict(self.mask_coverage),
            "labels": dict(self.labels),
            **({"classes": {k: dict(v) for k, v in self.classes.items()}} if self.classes else {}),
            "problems": [p.to_dict() for p in self.problems],
        }

    def format(self) -> str:
        """The report as a few lines of text for a terminal."""
        lines = [
            f"{self.root} (layout: {self.layout})",
            f"  pairs:       {self.n_pairs}",
            f"  patients:    {'unknown' if self.n_patients is None else self.n_patients}",
            *(
                [f"  volumes:     {self.n_volumes} (a pair is one of their slices)"]
                if self.n_volumes
                else []
            ),
            "  image sizes: " + ", ".join(f"{s} ({n})" for s, n in self.image_sizes.items()),
        ]
        if self.labels:
            lines.append(
                "  labels:      " + ", ".join(f"{k} ({n})" for k, n in self.labels.items())
            )
        if self.mask_coverage:
            c = self.mask_coverage
            lines.append(
                f"  mask coverage: mean {c['mean']:.2%}, min {c['min']:.2%}, max {c['max']:.2%}, "
                f"{c['empty']} empty"
            )
        if self.classes:
            lines.append("  classes:     (share of the pixels, images holding the class)")
            width = max(len(name) for name in self.classes)
            lines.extend(
                f"    {name:<{width}}  {c['coverage']:7.2%}  {c['images']} images"
                for name, c in self.classes.items()
            )
        if self.problems:
            lines.append(f"  {len(self.problems)} problem(s):")
            lines.extend(f"    {p}" for p in self.problems)
        else:
            lines.append("  no problems found")
        return "\n".join(lines)


def inspect(
    root: str | Path,
    layout: str = "auto",
    *,
    workers: int | None = None,
    num_classes: int | None = None,
    classes: str | list[str] | None = None,
) -> InspectionReport:
    """Read every pair under ``root`` and report what is there and what is wrong.

    Unlike `segkit.data.find_samples`, problems do not stop the inspection: they are all
    collected in the report.

    Args:
        root: the data folder.
        layout: ``"auto"`` (detect) or one of `segkit.data.LAYOUTS`.
        workers: decoding threads; default: the number of CPUs, at most 8.
        num_classes: read masks as label maps of this many classes (a ``classes.json`` in
            ``root`` does so too); see `segkit.data.classes.resolve_classes`.
        classes: ``"tumour-type"`` or the class names, as `segkit.data.classes.resolve_classes`.

    Raises:
        DataError: the folder is missing, empty or of no known layout.
    """
    found = resolve_classes(root, num_classes, classes)
    samples, problems = scan(root, layout)
    layout = samples[0].layout if samples else layout
    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        if layout == "volumes":  # read each volume once, not once per slice
            cases = list(dict.fromkeys((s.modalities, s.mask) for s in samples))
            results = [
                r for case in pool.map(lambda c: _check_case(*c, found), cases) for r in case
            ]
        else:
            results = list(pool.map(lambda sample: _check(sample, found), samples))

    sizes: Counter[str] = Counter()
    coverages = []
    class_shares = []
    for result in results:
        if isinstance(result, Problem):
            problems.append(result)
        else:
            (height, width), coverage, shares = result
            sizes[f"{width}x{height}"] += 1
            coverages.append(coverage)
            class_shares.append(shares)

    report = InspectionReport(
        root=str(root), layout=layout, n_pairs=len(samples), problems=problems
    )
    if layout == "volumes":
        report.n_volumes = len({s.patient for s in samples})
    report.image_sizes = dict(sizes.most_common())
    if coverages:
        report.mask_coverage = {
            "mean": float(np.mean(coverages)),
            "min": float(np.min(coverages)),
            "max": float(np.max(coverages)),
            "empty": int(sum(c == 0 for c in coverages)),
        }
    if samples and all(s.patient for s in samples):
        report.n_patients = len({s.patient for s in samples})
    labels = Counter(s.label_name or str(s.label) for s in samples if s.label is not None)
    report.labels = dict(sorted(labels.items()))
    if found is not None and class_shares:
        shares = np.array(class_shares)
        report.classes = {
            name: {"coverage": float(shares[:, k].mean()), "images": int((shares[:, k] > 0).sum())}
            for k, name in enumerate(found.names)
        }
    return report


def _check(
    sample: Sample, classes: Classes | None
) -> tuple[tuple[int, int], float, np.ndarray | None] | Problem:
    """``((height, width), foreground coverage, share of each class)`` of a readable pair
    (no shares for a binary data set), else the problem found."""
    try:
        if classes is None:
            image, mask = read_pair(sample)
        else:
            image, mask = read_pair(
                sample, num_classes=classes.num_classes, class_source=classes.source
            )
    except DataError as exc:
        return Problem(str(exc.path or sample.image), str(exc))
    if classes is None:
        return image.shape[:2], float(mask.mean()), None
    shares = np.bincount(mask.ravel(), minlength=classes.num_classes) / mask.size
    return image.shape[:2], float((mask > 0).mean()), shares


def _check_case(images: tuple, labels, classes: Classes | None) -> list:
    """`_check`'s result for each slice of a volume, or one problem for the whole volume."""
    prep = Preprocessing.for_classes(classes)
    try:
        image, truth = volume_layout.read_case(images, labels)
        truth_slices = volumes.slicing(image).slices(
            volume_layout.mask_values(truth.array, labels, prep)
        )
    except DataError as exc:
        return [Problem(str(exc.path or labels), str(exc))]
    results = []
    for mask in truth_slices:
        if classes is None:
            results.append((mask.shape, float(mask.mean()), None))
        else:
            shares = np.bincount(mask.ravel(), minlength=classes.num_classes) / mask.size
            results.append((mask.shape, float((mask > 0).mean()), shares))
    return results
