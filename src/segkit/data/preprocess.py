"""Reading a sample's pixels and bringing them to the model's size and scale.

By default this does what the original notebook did: greyscale, 256x256, divided by 255, float32.
Reading happens in two steps so that the slow one can be cached:

1. `decode` reads image and mask at their original size, checks them, resizes them and
   returns ``uint8`` arrays (image ``(H, W, C)`` 0..255, mask ``(H, W, 1)`` in {0, 1}, or
   class indices ``0..K-1`` for a multi-class data set: see `segkit.data.classes`).
2. `normalize` turns the ``uint8`` image into the ``float32`` the model sees.
"""

from __future__ import annotations

from dataclasses import InitVar, dataclass
from pathlib import Path

import numpy as np

from segkit import masks
from segkit.data.classes import CLASS_SOURCES, Classes
from segkit.data.errors import DataError
from segkit.data.imagefiles import (
    image_size,
    is_palette,
    is_tiff,
    mat_size,
    read_array,
    read_mat,
)
from segkit.data.samples import Sample
from segkit.resize import resize_image, resize_labels, resize_mask

#: The three LGG MRI sequences, in the order the TIFF channels store them.
LGG_CHANNELS = ("pre-contrast", "flair", "post-contrast")

#: The LGG channel used when one channel is asked for: the masks were drawn on FLAIR.
LGG_DEFAULT_CHANNEL = "flair"

NORMALIZATIONS = ("divide255", "zscore")


@dataclass(frozen=True)
class Preprocessing:
    """How images and masks are brought to the model's input.

    Attributes:
        size: output ``(height, width)``.
        channels: ``1`` (greyscale; FLAIR for LGG), ``3`` (RGB; all three LGG sequences; a
            greyscale image repeated), or a tuple picking channels of a multi-channel image by
            index or, for LGG, by name from `LGG_CHANNELS`, e.g. ``("flair",
            "post-contrast")``.
        normalize: ``"divide255"`` (values in [0, 1], as the notebook did) or ``"zscore"``
            (per image and channel: zero mean, unit standard deviation).
        num_classes: ``None`` for binary masks (0/255 or 0/1 files, read as {0, 1}); ``K`` for
            label maps with class indices ``0..K-1``.
        class_source: with ``num_classes``: ``"mask"`` (the mask's pixel values, or a palette
            PNG's indices, are the classes) or ``"sample-label"`` (a binary mask whose
            foreground takes the sample's label, e.g. the Figshare tumour type).
        ignore_index: with label maps (``class_source="mask"``): a value of ``num_classes`` or
            more, up to 255, that marks unlabelled pixels; they are kept as they are, for the
            losses and metrics given the same ``ignore_index`` to leave out. An argument, not a
            field: it concerns the true masks only, so the records of how a model reads its
            images (weights files, ONNX metadata) leave it out.
    """

    size: tuple[int, int] = (256, 256)
    channels: int | tuple[int | str, ...] = 1
    normalize: str = "divide255"
    num_classes: int | None = None
    class_source: str = "mask"
    ignore_index: InitVar[int | None] = None

    def __post_init__(self, ignore_index: int | None) -> None:
        size = tuple(int(s) for s in self.size)
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"size must be (height, width) of positive ints, not {self.size!r}")
        object.__setattr__(self, "size", size)
        channels = self.channels
        if isinstance(channels, (list, tuple)):
            channels = tuple(channels)
            if not channels:
                raise ValueError("channels must not be an empty tuple")
            for c in channels:
                if isinstance(c, str) and c not in LGG_CHANNELS:
                    raise ValueError(f"unknown channel {c!r}; named channels are {LGG_CHANNELS}")
            object.__setattr__(self, "channels", channels)
        elif channels not in (1, 3):
            raise ValueError(f"channels must be 1, 3 or a tuple of channels, not {channels!r}")
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {NORMALIZATIONS}, not {self.normalize!r}")
        if self.num_classes is not None and (
            int(self.num_classes) != self.num_classes or self.num_classes < 2
        ):
            raise ValueError(f"num_classes must be None or at least 2, not {self.num_classes!r}")
        if self.class_source not in CLASS_SOURCES:
            raise ValueError(
                f"class_source must be one of {CLASS_SOURCES}, not {self.class_source!r}"
            )
        if ignore_index is not None:
            if self.num_classes is None or self.class_source != "mask":
                raise ValueError(
                    "ignore_index needs label-map masks (num_classes, with class_source 'mask'): "
                    "in 0/255 masks 255 is the foreground"
                )
            if int(ignore_index) != ignore_index or not self.num_classes <= ignore_index <= 255:
                raise ValueError(
                    f"ignore_index must be a whole number from num_classes ({self.num_classes}) "
                    f"to 255, not {ignore_index!r}"
                )
            ignore_index = int(ignore_index)
        object.__setattr__(self, "ignore_index", ignore_index)

    @classmethod
    def for_classes(cls, classes: Classes | None, **settings) -> Preprocessing:
        """Preprocessing that reads masks as ``classes`` say (binary when None)."""
        if classes is None:
            return cls(**settings)
        return cls(**settings, num_classes=classes.num_classes, class_source=classes.source)

    @property
    def n_channels(self) -> int:
        """Number of channels of the output image."""
        return len(self.channels) if isinstance(self.channels, tuple) else self.channels

    def key(self) -> str:
        """A short stable string naming these settings, e.g. ``"256x256-c1-divide255"``."""
        if isinstance(self.channels, tuple):
            channels = "+".join(str(c) for c in self.channels)
        else:
            channels = f"c{self.channels}"
        key = f"{self.size[0]}x{self.size[1]}-{channels}-{self.normalize}"
        if self.num_classes is None:  # binary: the key it always had
            return key
        key = f"{key}-k{self.num_classes}-{self.class_source}"
        return key if self.ignore_index is None else f"{key}-ignore{self.ignore_index}"


def decode(sample: Sample, prep: Preprocessing) -> tuple[np.ndarray, np.ndarray]:
    """Read, check and resize one sample, without normalising it.

    Returns:
        ``(image, mask)``: image ``uint8 (H, W, C)``, mask ``uint8 (H, W, 1)`` in {0, 1} (or
        ``0..K-1`` with ``prep.num_classes``), with ``(H, W) = prep.size``.

    Raises:
        DataError: unreadable file, image and mask of different sizes, a mask that is not
            binary, or a class value of ``K`` or more; the message names the file.
    """
    if prep.num_classes is not None and prep.class_source == "sample-label":
        # Resize the binary mask as a binary one, then colour it: exactly the binary targets.
        image, mask = read_pair(sample, prep.channels)
        mask = resize_mask(mask, prep.size) * _sample_label(sample, prep.num_classes)
        return resize_image(image, prep.size), mask.astype(np.uint8)[..., None]
    image, mask = read_pair(
        sample, prep.channels, num_classes=prep.num_classes, ignore_index=prep.ignore_index
    )
    resize = resize_mask if prep.num_classes is None else resize_labels
    return resize_image(image, prep.size), resize(mask, prep.size)[..., None]


def load_sample(sample: Sample, prep: Preprocessing | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read one sample ready for the model.

    Args:
        sample: the sample.
        prep: preprocessing; the notebook's defaults when omitted.

    Returns:
        ``(image, mask)``: image ``float32 (H, W, C)``, mask ``uint8 (H, W, 1)`` in {0, 1}.
    """
    prep = prep or Preprocessing()
    image, mask = decode(sample, prep)
    return normalize(image, prep), mask


def normalize(image: np.ndarray, prep: Preprocessing, out: np.ndarray | None = None) -> np.ndarray:
    """Scale a ``uint8`` (or already divided-by-255 float) image as ``prep.normalize`` says.

    ``"zscore"`` gives the same result for either input, so augmentation can work on [0, 1]
    floats before it.

    Args:
        image: ``(H, W, C)`` image.
        prep: the preprocessing.
        out: optional ``float32`` array of the image's shape to write into (saves a copy when
            filling a large array).
    """
    if out is None:
        out = np.empty(image.shape, np.float32)
    if image.dtype == np.uint8:
        np.divide(image, np.float32(255), out=out, dtype=np.float32)
    else:
        out[...] = image
    if prep.normalize == "zscore":
        axes = tuple(range(out.ndim - 1))  # per channel, over the pixels
        mean = out.mean(axis=axes, keepdims=True)
        std = out.std(axis=axes, keepdims=True)
        out -= mean
        out /= np.maximum(std, np.float32(1e-6))
    return out


def read_pair(
    sample: Sample,
    channels: int | tuple = 1,
    *,
    num_classes: int | None = None,
    class_source: str = "mask",
    ignore_index: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Read image and mask at their original size and check that they fit together.

    Args:
        sample: the sample.
        channels: as `Preprocessing.channels`.
        num_classes: ``None`` for a binary mask; ``K`` for a label map of values ``0..K-1``.
        class_source: as `Preprocessing.class_source`.
        ignore_index: a label-map value for unlabelled pixels, kept (see `Preprocessing`).

    Returns:
        ``(image, mask)``: image ``uint8 (H, W, C)``, mask ``uint8 (H, W)`` in {0, 1} (or
        ``0..K-1``).

    Raises:
        DataError: as `decode`.
    """
    by_label = num_classes is not None and class_source == "sample-label"
    values = None if by_label else num_classes
    if sample.layout == "figshare-mat":
        image, mask = read_mat(sample.image)
        image = _pick_channels(image[..., None], channels, sample)
    else:
        image = _read_image(sample, channels)
        mask = _read_mask_file(sample.mask, labels=values is not None)
    if image.shape[:2] != mask.shape:
        raise DataError(
            f"image {sample.image} is {image.shape[1]}x{image.shape[0]} but its mask "
            f"{sample.mask} is {mask.shape[1]}x{mask.shape[0]}",
            sample.mask,
        )
    mask = _mask_values(mask, sample.mask, values, ignore_index)
    return image, mask * _sample_label(sample, num_classes) if by_label else mask


def read_mask(
    sample: Sample,
    *,
    num_classes: int | None = None,
    class_source: str = "mask",
    ignore_index: int | None = None,
) -> np.ndarray:
    """The mask at its original resolution, for evaluation at the ground truth's size.

    Args:
        sample: the sample.
        num_classes: ``None`` for a binary mask; ``K`` for a label map.
        class_source: as `Preprocessing.class_source`.
        ignore_index: a label-map value for unlabelled pixels, kept (see `Preprocessing`).

    Returns:
        ``uint8 (H, W)`` in {0, 1} (or ``0..K-1``).
    """
    by_label = num_classes is not None and class_source == "sample-label"
    values = None if by_label else num_classes
    if sample.layout == "figshare-mat":
        mask = read_mat(sample.mask)[1]
    else:
        mask = _read_mask_file(sample.mask, values is not None)
    mask = _mask_values(mask, sample.mask, values, ignore_index)
    if by_label:
        return mask * _sample_label(sample, num_classes)
    return mask


def original_size(sample: Sample) -> tuple[int, int]:
    """The image's ``(height, width)`` on disk, read from the file's header only."""
    if sample.layout == "figshare-mat":
        return mat_size(sample.image)
    return image_size(sample.image)


def _read_image(sample: Sample, channels: int | tuple) -> np.ndarray:
    """The image as ``uint8 (H, W, C)`` with the requested channels."""
    path = sample.image
    if is_tiff(path):
        image = read_array(path, "RGB")  # the mode only matters for non-TIFF files
        if image.ndim == 2:
            image = image[..., None]
        return _pick_channels(image, channels, sample)
    mode = "L" if channels == 1 else "RGB"
    image = read_array(path, mode)
    return _pick_channels(image if image.ndim == 3 else image[..., None], channels, sample)


def _pick_channels(image: np.ndarray, channels: int | tuple, sample: Sample) -> np.ndarray:
    n = image.shape[-1]
    if isinstance(channels, tuple):
        indices = [LGG_CHANNELS.index(c) if isinstance(c, str) else c for c in channels]
        if any(isinstance(c, str) for c in channels) and sample.layout != "lgg":
            raise DataError(f"{sample.image}: named channels {channels} exist only in LGG data")
        if max(indices) >= n:
            raise DataError(f"{sample.image} has {n} channel(s); asked for {channels}")
        return np.ascontiguousarray(image[..., indices])
    if channels == n:
        return image
    if channels == 1:
        if sample.layout == "lgg":
            return image[..., [LGG_CHANNELS.index(LGG_DEFAULT_CHANNEL)]]
        return image[..., :1]
    if n == 1:  # channels == 3 from a greyscale image
        return np.repeat(image, 3, axis=-1)
    raise DataError(f"{sample.image} has {n} channels; cannot make {channels}")


def _read_mask_file(path: Path, labels: bool = False) -> np.ndarray:
    # A label map saved as a palette PNG is read by index, not by the colours' brightness.
    mask = read_array(path, "P" if labels and is_palette(path) else "L")
    return mask[..., 0] if mask.ndim == 3 else mask  # a TIFF mask saved as RGB


def _mask_values(
    mask: np.ndarray, path: Path, num_classes: int | None, ignore_index: int | None = None
) -> np.ndarray:
    """A mask file's pixels as {0, 1} (binary) or class indices below ``num_classes`` (and
    ``ignore_index``)."""
    if num_classes is None:
        return _binary_mask(mask, path)
    try:
        return masks.from_label_values(mask, num_classes, ignore_index)
    except ValueError as exc:
        raise DataError(f"mask {path} is {exc}", path) from None


def _sample_label(sample: Sample, num_classes: int) -> np.uint8:
    """The class a sample's foreground takes from its label (``labels.csv``, ``.mat`` label)."""
    if sample.label is None:
        raise DataError(
            f"{sample.mask}: sample {sample.key} has no label (labels.csv or the .mat label "
            "field) to take its class from",
            sample.mask,
        )
    if not 0 < sample.label < num_classes:
        raise DataError(
            f"{sample.mask}: sample {sample.key} has the label {sample.label}; classes are "
            f"1..{num_classes - 1} (num_classes={num_classes})",
            sample.mask,
        )
    return np.uint8(sample.label)


def _binary_mask(mask: np.ndarray, path: Path) -> np.ndarray:
    """A mask file's 0/255 or 0/1 pixels as {0, 1}; anything else is an error naming the file."""
    try:
        return masks.from_pixel_values(mask)
    except ValueError as exc:
        raise DataError(f"mask {path} is {exc}{masks.label_map_hint(mask)}", path) from None


def read_image(path: str | Path, channels: int | tuple = 1) -> np.ndarray:
    """One image file, without a mask, at its original size: ``uint8 (H, W, C)``.

    For running a model on new images. TIFF files are read as LGG slices (so ``channels=1``
    picks FLAIR); other formats are converted by Pillow to greyscale or RGB.

    Raises:
        DataError: the file cannot be read or lacks the channels asked for.
    """
    path = Path(path)
    layout = "lgg" if is_tiff(path) else "folders"
    return _read_image(Sample(key=path.stem, image=path, mask=path, layout=layout), channels)


def read_mask_file(
    path: str | Path, num_classes: int | None = None, ignore_index: int | None = None
) -> np.ndarray:
    """One mask file at its original size: ``uint8 (H, W)`` in {0, 1}, or a label map.

    Args:
        path: the file.
        num_classes: ``None`` for a binary mask; ``K`` for a label map of values ``0..K-1``
            (a palette PNG is read by index).
        ignore_index: a label-map value for unlabelled pixels, kept (see `Preprocessing`).

    Raises:
        DataError: the file cannot be read, is not binary (0/255 or 0/1), or holds a class
            value of ``K`` or more (other than ``ignore_index``).
    """
    path = Path(path)
    mask = _read_mask_file(path, num_classes is not None)
    return _mask_values(mask, path, num_classes, ignore_index)
