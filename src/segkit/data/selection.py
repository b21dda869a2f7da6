"""Choosing which slices to train on: all of them, those that hold foreground, or those and a
share of the rest.

Most slices of a scan show no tumour: 386 of the 607 slices of the 16 LGG patients hold
none. A 2-D model trained on every slice spends most of its steps on empty ones;
trained only on slices with foreground it never learns that a slice can be empty. nnU-Net's
2-D trainer samples a share of each. The choice, as text (``segkit train --slices``):

============================ ==============================================================
``"all"``                    every slice
``"foreground"``             only the slices whose mask holds foreground (any non-zero value)
``"foreground+0.1"``         those, and a random tenth of the others (any share from 0 to 1)
============================ ==============================================================

```python
from segkit import data
from segkit.data.selection import select_slices

samples = data.find_samples("volumes/")                       # any layout
train, val, test = data.split_samples(samples).select(samples)
train = select_slices(train, "foreground+0.1", seed=0)        # validation keeps every slice
```

Only training samples should be chosen so: validation and test scores describe whole scans.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from segkit.data import volume_layout
from segkit.data.imagefiles import is_palette, read_array, read_mat
from segkit.data.samples import Sample

#: The choices `select_slices` takes besides ``"foreground+<share>"``.
SLICE_CHOICES = ("all", "foreground")


def parse_slices(slices: str) -> float:
    """The share of the slices without foreground that ``slices`` keeps: 1.0 for ``"all"``,
    0.0 for ``"foreground"``, 0.1 for ``"foreground+0.1"``.

    Raises:
        ValueError: any other text, naming the argument.
    """
    text = str(slices).strip()
    if text == "all":
        return 1.0
    if text == "foreground":
        return 0.0
    head, plus, share = text.partition("+")
    try:
        value = float(share) if head == "foreground" and plus else float("nan")
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise ValueError(
            f"slices must be all, foreground or foreground+SHARE with a share from 0 to 1 "
            f"(e.g. foreground+0.1), not {slices!r}"
        )
    return value


def select_slices(
    samples: Sequence[Sample], slices: str = "all", *, seed: int = 0, workers: int | None = None
) -> list[Sample]:
    """The samples ``slices`` chooses (see the module docstring), in their order.

    Args:
        samples: samples of any layout.
        slices: ``"all"``, ``"foreground"`` or ``"foreground+<share>"``.
        seed: draws the share of slices without foreground; the same seed and samples give the
            same choice.
        workers: threads reading masks (default: the number of CPUs, at most 8).

    Raises:
        ValueError: a bad ``slices``.
        DataError: a mask that cannot be read, naming it.
    """
    share = parse_slices(slices)
    samples = list(samples)
    if share == 1.0:
        return samples
    held = has_foreground(samples, workers=workers)
    empty = np.flatnonzero(~held)
    kept = np.random.default_rng(seed).choice(empty, round(share * empty.size), replace=False)
    chosen = held.copy()
    chosen[kept] = True
    return [sample for sample, keep in zip(samples, chosen, strict=True) if keep]


def has_foreground(samples: Sequence[Sample], *, workers: int | None = None) -> np.ndarray:
    """Whether each sample's mask holds foreground (any non-zero value), as a bool array.

    Volumes are read once each, whatever the number of their slices asked about.
    """
    samples = list(samples)
    held = np.zeros(len(samples), bool)
    volume_labels = {s.mask for s in samples if s.layout == "volumes"}
    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        by_volume = dict(
            zip(volume_labels, pool.map(volume_layout.foreground_slices, volume_labels))
        )
        flat = [i for i, s in enumerate(samples) if s.layout != "volumes"]
        for i, found in zip(flat, pool.map(lambda i: _mask_holds(samples[i]), flat)):
            held[i] = found
    for i, sample in enumerate(samples):
        if sample.layout == "volumes":
            held[i] = by_volume[sample.mask][sample.slice]
    return held


def _mask_holds(sample: Sample) -> bool:
    if sample.layout == "figshare-mat":
        return bool(read_mat(sample.mask)[1].any())
    return bool(read_array(sample.mask, "P" if is_palette(sample.mask) else "L").any())
