"""Bringing images, masks and probability maps to another size: the one place segkit resizes.

Images and probabilities are resized bilinearly (Pillow's filter widens with the reduction
factor when shrinking: the anti-aliasing skimage's ``resize`` adds), channel by channel. Masks
are resized by area (training targets, which should keep thin structures' share) or by nearest
neighbour (predicted masks brought back to a ground truth's size, where no new values may
appear).
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def _resize_channels(array: np.ndarray, size: tuple[int, int], resample) -> np.ndarray:
    """Resize each channel of ``(H, W, C)`` ``array`` to ``size`` (height, width)."""
    height, width = size
    return np.stack(
        [
            np.asarray(Image.fromarray(array[..., c]).resize((width, height), resample))
            for c in range(array.shape[-1])
        ],
        axis=-1,
    )


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a ``uint8 (H, W, C)`` image to ``size`` (height, width), bilinearly."""
    if image.shape[:2] == tuple(size):
        return image
    return _resize_channels(image, size, Image.Resampling.BILINEAR)


def resize_probabilities(probs: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize ``float32 (H, W, K)`` probabilities to ``size`` (height, width), bilinearly."""
    if probs.shape[:2] == tuple(size):
        return probs
    return _resize_channels(probs, size, Image.Resampling.BILINEAR)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a ``(H, W)`` mask in {0, 1} to ``size``: area-average, then threshold at 0.5."""
    height, width = size
    if mask.shape == (height, width):
        return mask
    return (resize_mask_area(mask, size) >= 0.5).astype(np.uint8)


def resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a ``uint8 (H, W)`` label map to ``size``: each pixel takes the class that covers
    most of its area (ties go to the lower class), so small classes keep their share."""
    height, width = size
    if labels.shape == (height, width):
        return labels
    present = np.unique(labels)
    shares = np.stack(
        [resize_mask_area(labels == value, size) for value in present.tolist()], axis=-1
    )
    return present[np.argmax(shares, axis=-1)].astype(np.uint8)


def resize_mask_area(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The share of each output pixel's area that a ``(H, W)`` mask in {0, 1} covers."""
    height, width = size
    image = Image.fromarray(mask.astype(np.float32))
    return np.asarray(image.resize((width, height), Image.Resampling.BOX))


def resize_nearest(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a ``(H, W)`` mask or label map to ``size`` (height, width)."""
    height, width = size
    if mask.shape == (height, width):
        return mask
    return np.asarray(Image.fromarray(mask).resize((width, height), Image.Resampling.NEAREST))
