"""How bright the images a model was trained on were, to notice inputs unlike them.

A model trained on T1 slices still outlines "tumours" on a FLAIR slice with none. Three
numbers per image, measured on the ``uint8`` image brought to the model's size and divided by
255 (before any z-score, which would erase them), describe its look: the mean, the standard
deviation and the share of pixels brighter than 5% (how much of the frame the head fills).
The range of each over the training images (0.5th to 99.5th percentile) travels with the model;
an input outside any of them is reported.

Measured with the range the shipped ``resunet.figshare`` records: 287 of the 607 LGG FLAIR
slices lie outside it, and so do 6 of the 260 Figshare test-block slices and 1 of the 26
untouched Figshare originals (same scanners and sequence as its training data). It is a warning
sign, not a verdict.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np

#: The three numbers, in the order `image_statistics` returns them.
STATISTICS = ("mean", "std", "share above 5%")

#: Percentiles of the training images that bound the expected range.
PERCENTILES = (0.5, 99.5)

#: Fewer training images than this give a range too narrow to judge by (a few images' extremes
#: would flag most inputs): such a range is recorded but never warns.
MIN_IMAGES = 50


def image_statistics(image: np.ndarray) -> np.ndarray:
    """Mean, standard deviation and share of pixels above 5% of a ``uint8`` image."""
    scaled = image.astype(np.float32) / 255
    return np.array([scaled.mean(), scaled.std(), (scaled > 0.05).mean()], np.float64)


@dataclass(frozen=True)
class IntensityRange:
    """The range of each of `STATISTICS` over a model's training images."""

    low: tuple[float, float, float]
    high: tuple[float, float, float]
    images: int

    @classmethod
    def measure(cls, images: Iterable[np.ndarray]) -> IntensityRange:
        """The range over ``uint8`` images at the model's size."""
        values = np.stack([image_statistics(i) for i in images])
        low, high = np.percentile(values, PERCENTILES, axis=0)
        return cls(tuple(map(float, low)), tuple(map(float, high)), len(values))

    @classmethod
    def from_dict(cls, record: dict) -> IntensityRange:
        return cls(tuple(record["low"]), tuple(record["high"]), int(record["images"]))

    def to_dict(self) -> dict:
        return asdict(self)

    def outside(self, image: np.ndarray) -> str | None:
        """What lies outside the range for a ``uint8`` image, in words, or None (always None
        for a range measured on fewer than `MIN_IMAGES` images)."""
        if self.images < MIN_IMAGES:
            return None
        values = image_statistics(image)
        for name, value, low, high in zip(STATISTICS, values, self.low, self.high):
            if not low <= value <= high:
                return f"{name} {value:.3f}, trained on {low:.3f} to {high:.3f}"
        return None
