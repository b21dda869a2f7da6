"""Paired augmentation: the same geometric change to image and mask, intensity to the image only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Augment:
    """Random changes applied to a training pair; draw them with a seeded generator.

    Geometric changes (flips, 90-degree rotations, a small affine) move image and mask together;
    the mask is resampled with nearest neighbour so it stays binary. Brightness, contrast and gamma
    change the image only, which is expected in [0, 1] and stays there.

    Attributes:
        flip: flip left-right and up-down, each with probability 1/2.
        rotate90: rotate by a random multiple of 90 degrees (square images only).
        rotation: largest small rotation in degrees (0 turns the affine part off with
            ``scale`` and ``shift`` at 0).
        scale: largest relative zoom, e.g. 0.1 for 0.9x to 1.1x.
        shift: largest translation as a fraction of the image size.
        brightness: largest value added to the image.
        contrast: largest relative change of contrast around the image mean.
        gamma: largest relative change of gamma (``image ** gamma``).
    """

    flip: bool = True
    rotate90: bool = True
    rotation: float = 10.0
    scale: float = 0.1
    shift: float = 0.05
    brightness: float = 0.1
    contrast: float = 0.1
    gamma: float = 0.1

    def __call__(
        self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Augment one pair.

        Args:
            image: ``float32 (H, W, C)`` in [0, 1].
            mask: ``(H, W, 1)`` in {0, 1}.
            rng: the generator the random changes are drawn from.

        Returns:
            ``(image, mask)`` of the same shapes and dtypes.
        """
        if self.flip:
            if rng.random() < 0.5:
                image, mask = image[:, ::-1], mask[:, ::-1]
            if rng.random() < 0.5:
                image, mask = image[::-1], mask[::-1]
        if self.rotate90 and image.shape[0] == image.shape[1]:
            turns = int(rng.integers(4))
            image, mask = np.rot90(image, turns), np.rot90(mask, turns)
        if self.rotation or self.scale or self.shift:
            image, mask = self._affine(image, mask, rng)
        image = self._intensity(np.ascontiguousarray(image, np.float32), rng)
        return image, np.ascontiguousarray(mask)

    def _affine(self, image, mask, rng):
        from scipy import ndimage  # here, not at the top: the command line starts without SciPy

        angle = np.deg2rad(rng.uniform(-self.rotation, self.rotation))
        zoom = 1 + rng.uniform(-self.scale, self.scale)
        shift = rng.uniform(-self.shift, self.shift, size=2) * image.shape[:2]
        # affine_transform maps output coordinates to input ones: invert rotation and zoom.
        cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom
        matrix = np.array([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]])
        centre = (np.array(image.shape[:3]) - 1) / 2
        centre[2] = 0
        offset = centre - matrix @ centre - np.array([shift[0], shift[1], 0])
        image = ndimage.affine_transform(image, matrix, offset, order=1, mode="constant")
        mask = ndimage.affine_transform(mask, matrix, offset, order=0, mode="constant")
        return image, mask

    def _intensity(self, image, rng):
        if self.gamma:
            image = np.clip(image, 0, 1) ** rng.uniform(1 - self.gamma, 1 + self.gamma)
        if self.contrast:
            mean = image.mean()
            image = (image - mean) * rng.uniform(1 - self.contrast, 1 + self.contrast) + mean
        if self.brightness:
            image = image + rng.uniform(-self.brightness, self.brightness)
        return np.clip(image, 0, 1).astype(np.float32)


def random_crop(
    image: np.ndarray,
    mask: np.ndarray,
    size: tuple[int, int],
    rng: np.random.Generator,
    foreground: float = 0.8,
) -> tuple[np.ndarray, np.ndarray]:
    """Cut the same random ``size`` window from image and mask.

    Fully convolutional networks can train on crops and still segment whole images at the
    scale they were trained on, at a fraction of the cost. With probability ``foreground`` the
    window is placed around a random foreground pixel (when the mask has any), so that crops of
    small tumours are not mostly background.

    Args:
        image: ``(H, W, C)`` image.
        mask: ``(H, W, 1)`` mask in {0, 1}.
        size: ``(height, width)`` of the crop, at most the image's.
        rng: the generator the window is drawn from.
        foreground: probability of centring the window on the foreground.

    Returns:
        ``(image, mask)`` crops.
    """
    height, width = size
    if height > image.shape[0] or width > image.shape[1]:
        raise ValueError(f"crop {size} is larger than the image {image.shape[:2]}")
    rows, cols = np.nonzero(mask[..., 0])
    if rows.size and rng.random() < foreground:
        pick = rng.integers(rows.size)
        top = rows[pick] - height // 2 + int(rng.integers(-height // 4, height // 4 + 1))
        left = cols[pick] - width // 2 + int(rng.integers(-width // 4, width // 4 + 1))
    else:
        top = int(rng.integers(image.shape[0] - height + 1))
        left = int(rng.integers(image.shape[1] - width + 1))
    top = int(np.clip(top, 0, image.shape[0] - height))
    left = int(np.clip(left, 0, image.shape[1] - width))
    window = np.s_[top : top + height, left : left + width]
    return image[window], mask[window]
