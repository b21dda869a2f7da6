"""Post-processing of predicted masks: connected regions, holes, and "at least one region".

The rules nnU-Net users know, in NumPy and `scipy.ndimage`:

* **regions** are 8-connected: foreground pixels that touch at an edge or a corner belong to
  one region (``scipy.ndimage.label`` with a 3x3 block of ones);
* **holes** are background pixels that cannot reach the image border through 4-connected
  background (``scipy.ndimage.binary_fill_holes``, whose default cross is the background
  connectivity that matches 8-connected regions);
* **at least one region**: when a mask is empty, the region around the most probable pixel is
  kept: the 8-connected pixels, containing that pixel, whose probability is at least half of
  its probability. Nothing is added where every probability is 0. It is meant for data sets
  where every image holds a target (each Figshare slice shows a tumour), and is wrong where
  empty images are common (most LGG slices have no tumour).

`apply` runs them in a fixed order: drop regions under ``min_size`` pixels, keep the largest
region, then add the region around the peak if the mask is empty, then fill holes. Label maps
(a class index per pixel) are processed class by class: each class's pixels are one binary
mask; pixels a class loses become background, and filling a class's holes only fills
background, never another class. For a region model (one sigmoid channel per region, no
background channel) "at least one region" looks for the most probable pixel in every region's
channel and paints what it adds with that region's label (`segkit.masks.paint_order`).

```python
from segkit.postprocess import PostProcessing, apply
rules = PostProcessing.parse("largest,fill-holes,at-least-one")
cleaned = apply(mask, rules, probabilities)     # mask (H, W), probabilities (H, W, K)
str(rules)                                      # "largest,fill-holes,at-least-one"
```
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from segkit.masks import check_region_channels, paint_order

__all__ = [
    "PostProcessing",
    "apply",
    "drop_small_regions",
    "fill_holes",
    "keep_largest_region",
    "label_regions",
    "region_around_peak",
]

#: 8-connectivity: pixels touching at an edge or a corner are one region.
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)

_WORDS = ("largest", "min-size=N", "fill-holes", "at-least-one")


@dataclass(frozen=True)
class PostProcessing:
    """Which post-processing rules to run (see the module docstring for each).

    Written as text, as ``--postprocess`` takes it, by `parse` and ``str``: ``"none"``, or a
    comma-separated list of ``largest``, ``min-size=N``, ``fill-holes``, ``at-least-one``.

    Attributes:
        keep_largest: keep only the largest region (of each class).
        min_size: drop regions of fewer pixels than this, at the model's input size (a caller
            predicting at another size scales it with `scaled`); 0 keeps every region.
        fill_holes: fill the holes inside regions.
        at_least_one: never leave a mask empty: keep the region around the most probable pixel.
    """

    keep_largest: bool = False
    min_size: int = 0
    fill_holes: bool = False
    at_least_one: bool = False

    def __post_init__(self):
        if isinstance(self.min_size, bool) or not isinstance(self.min_size, (int, np.integer)):
            raise ValueError(f"min_size must be a whole number of pixels, got {self.min_size!r}")
        if self.min_size < 0:
            raise ValueError(f"min_size must be 0 or more pixels, got {self.min_size}")

    def __bool__(self) -> bool:
        """Whether any rule is on."""
        return self != PostProcessing()

    def __str__(self) -> str:
        words = [
            word
            for word, on in (
                ("largest", self.keep_largest),
                (f"min-size={self.min_size}", self.min_size > 0),
                ("fill-holes", self.fill_holes),
                ("at-least-one", self.at_least_one),
            )
            if on
        ]
        return ",".join(words) or "none"

    @classmethod
    def parse(cls, text: str | PostProcessing) -> PostProcessing:
        """Rules from their text (``"none"`` or e.g. ``"largest,fill-holes"``).

        Raises:
            ValueError: a word that is not a rule, naming it and the rules there are.
        """
        if isinstance(text, PostProcessing):
            return text
        settings: dict = {}
        words = [word.strip().lower() for word in str(text).split(",") if word.strip()]
        for word in words:
            name, _, value = word.partition("=")
            if word == "none" and len(words) == 1:
                continue
            if word == "largest":
                settings["keep_largest"] = True
            elif word == "fill-holes":
                settings["fill_holes"] = True
            elif word == "at-least-one":
                settings["at_least_one"] = True
            elif name == "min-size" and value.isdigit():
                settings["min_size"] = int(value)
            else:
                raise ValueError(
                    f"postprocess: {word!r} is not a rule; give none or a comma-separated list "
                    f"of {', '.join(_WORDS)}"
                )
        return cls(**settings)

    def scaled(self, area_ratio: float) -> PostProcessing:
        """The same rules for masks of ``area_ratio`` times as many pixels as the model's input
        (``min_size`` scaled with it, so it means the same area of the image)."""
        if not self.min_size or area_ratio == 1:
            return self
        return replace(self, min_size=max(1, round(self.min_size * area_ratio)))


def label_regions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """The 8-connected regions of a binary ``(H, W)`` mask: ``(labels, count)``, as
    ``scipy.ndimage.label`` numbers them (1..count, background 0)."""
    from scipy import ndimage  # here, not at the top: the command line starts without SciPy

    return ndimage.label(np.asarray(mask, dtype=bool), structure=EIGHT_CONNECTED)


def keep_largest_region(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected region of a binary ``(H, W)`` mask, as bool; of regions of equal
    size the first in row-major order is kept. An empty mask stays empty."""
    labels, count = label_regions(mask)
    if count <= 1:
        return labels > 0
    sizes = np.bincount(labels.ravel())[1:]
    return labels == np.argmax(sizes) + 1


def drop_small_regions(mask: np.ndarray, min_size: int) -> np.ndarray:
    """A binary ``(H, W)`` mask without its 8-connected regions of fewer than ``min_size``
    pixels, as bool."""
    labels, count = label_regions(mask)
    keep = np.bincount(labels.ravel(), minlength=count + 1) >= min_size
    keep[0] = False  # background
    return keep[labels]


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """A binary ``(H, W)`` mask with its holes filled, as bool (see the module docstring)."""
    from scipy import ndimage  # here, not at the top: the command line starts without SciPy

    return ndimage.binary_fill_holes(np.asarray(mask, dtype=bool))


def region_around_peak(probability: np.ndarray) -> np.ndarray:
    """The 8-connected pixels, containing the most probable one, whose probability is at least
    half the highest; empty where every probability is 0.

    Args:
        probability: ``(H, W)`` probabilities of one class.
    """
    probability = np.asarray(probability, dtype=np.float32)
    peak = np.unravel_index(np.argmax(probability), probability.shape)
    if probability[peak] <= 0:
        return np.zeros(probability.shape, dtype=bool)
    labels, _ = label_regions(probability >= probability[peak] / 2)
    return labels == labels[peak]


def apply(
    mask: np.ndarray,
    rules: PostProcessing,
    probabilities: np.ndarray | None = None,
    regions=None,
) -> np.ndarray:
    """Post-process a binary mask or a label map.

    Args:
        mask: ``(H, W)`` integer or bool mask: 0/1, or a class index per pixel.
        rules: what to run.
        probabilities: ``(H, W, K)`` probabilities the mask was made from (one channel for a
            binary model, one per class, background first, for a label map, or one per region
            with ``regions``); needed only by ``at_least_one``.
        regions: for a region model (one sigmoid channel per region), the labels of each
            region, as `segkit.masks.labels_from_regions` takes them: ``at_least_one`` then adds
            the region around the most probable pixel of any region, painted with the label
            that region paints.

    Returns:
        The processed mask, of ``mask``'s shape and dtype.

    Raises:
        ValueError: ``mask`` is not 2-D, or ``at_least_one`` without fitting probabilities.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {mask.shape}")
    if not rules:
        return mask
    labels = mask.astype(np.int64)
    out = np.zeros_like(labels)
    for label in np.unique(labels[labels > 0]):
        region = labels == label
        if rules.min_size:
            region = drop_small_regions(region, rules.min_size)
        if rules.keep_largest:
            region = keep_largest_region(region)
        out[region] = label
    if rules.at_least_one and not out.any():
        label, region = _peak_region(probabilities, mask.shape, regions)
        out[region] = label
    if rules.fill_holes:
        for label in np.unique(out[out > 0]):
            out[fill_holes(out == label) & (out == 0)] = label
    return out.astype(mask.dtype)


def _peak_region(probabilities, shape: tuple[int, ...], regions=None) -> tuple[int, np.ndarray]:
    """The label and region that ``at_least_one`` adds: the most probable foreground pixel's
    class (1 for a binary model; the label its region paints for a region model) and the region
    around it in that channel's probabilities."""
    if probabilities is None:
        raise ValueError("at-least-one needs the probabilities the mask was made from")
    probabilities = np.asarray(probabilities, dtype=np.float32)
    if probabilities.ndim != 3 or probabilities.shape[:2] != tuple(shape):
        raise ValueError(
            f"probabilities must be (H, W, K) at the mask's size {tuple(shape)}, got shape "
            f"{probabilities.shape}"
        )
    if regions is not None:
        # Region channels have no background channel: every one is a candidate.
        check_region_channels(probabilities, regions, name="probabilities")
        painted = dict(paint_order(regions))
        channel = int(np.unravel_index(np.argmax(probabilities), probabilities.shape)[-1])
        return painted[channel], region_around_peak(probabilities[..., channel])
    if probabilities.shape[-1] == 1:
        return 1, region_around_peak(probabilities[..., 0])
    foreground = probabilities[..., 1:]
    peak = np.unravel_index(np.argmax(foreground), foreground.shape)
    label = int(peak[-1]) + 1
    return label, region_around_peak(probabilities[..., label])
