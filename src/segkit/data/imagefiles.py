"""Decoding image files to arrays: PNG, JPEG and BMP through imageio's Pillow plugin, TIFF
through its tifffile plugin, and the Figshare release's MATLAB v7.3 files through h5py.

A leaf module: it knows file formats, not samples, layouts or preprocessing. Every error names
the file at fault.
"""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np

from segkit.data.errors import DataError

#: File suffixes read as images.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

_TIFF_SUFFIXES = (".tif", ".tiff")


def is_tiff(path: Path) -> bool:
    return path.suffix.lower() in _TIFF_SUFFIXES


def read_array(path: Path, mode: str) -> np.ndarray:
    """Decode an image file to ``uint8``.

    Args:
        path: the file.
        mode: Pillow mode to convert to (``"L"`` greyscale, ``"RGB"``); TIFF files are returned
            as stored, whatever ``mode`` says.

    Raises:
        DataError: the file cannot be decoded or does not hold 8-bit pixels.
    """
    try:
        if is_tiff(path):
            array = iio.imread(path, plugin="tifffile")
        else:
            with iio.imopen(path, "r", plugin="pillow") as file:
                stored = file.metadata()["mode"]
                if stored.startswith(("I", "F")):  # converting would clip >8-bit values
                    raise DataError(f"{path}: expected 8-bit pixels, found mode {stored}", path)
                array = file.read(mode=mode)
    except DataError:
        raise
    except Exception as exc:  # decoders raise many types (OSError, SyntaxError, struct.error)
        raise DataError(f"cannot read {path}: {exc}", path) from exc
    if array.dtype != np.uint8:
        raise DataError(f"{path}: expected 8-bit pixels, found {array.dtype}", path)
    return array


def is_palette(path: Path) -> bool:
    """Whether an image file stores palette indices (a ``P`` mode PNG or GIF)."""
    if is_tiff(path):
        return False
    try:
        with iio.imopen(path, "r", plugin="pillow") as file:
            return file.metadata()["mode"] == "P"
    except Exception as exc:
        raise DataError(f"cannot read {path}: {exc}", path) from exc


def image_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` of an image file, read from its header only."""
    try:
        plugin = "tifffile" if is_tiff(path) else "pillow"
        shape = iio.improps(path, plugin=plugin).shape
    except Exception as exc:
        raise DataError(f"cannot read {path}: {exc}", path) from exc
    return int(shape[0]), int(shape[1])


def read_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Image (scaled to ``uint8`` by its own range) and raw mask of a Figshare ``.mat`` file."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            # MATLAB writes column-major, so h5py sees the transpose of each array.
            image = np.asarray(f["cjdata/image"]).T
            mask = np.asarray(f["cjdata/tumorMask"]).T
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}", path) from exc
    return _to_uint8(image), mask


def mat_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` of a Figshare ``.mat`` image, without reading its pixels."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            width, height = f["cjdata/image"].shape  # stored transposed (column-major)
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}", path) from exc
    return height, width


def read_mat_fields(path: Path) -> tuple[int, str]:
    """Label and patient ID of a Figshare ``.mat`` file, without reading its pixels."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            data = f["cjdata"]
            label = int(np.asarray(data["label"]).ravel()[0])
            patient = _matlab_string(data["PID"])
    except (OSError, KeyError, ValueError, IndexError) as exc:
        raise DataError(f"cannot read {path}: {exc}", path) from exc
    return label, patient


def _matlab_string(dataset) -> str:
    # MATLAB stores char arrays as uint16 character codes.
    return "".join(chr(c) for c in np.asarray(dataset).ravel() if c)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """Scale an int16 scan to 0..255 by its own range, as the published PNG copies were made."""
    image = image.astype(np.float32)
    low, high = float(image.min()), float(image.max())
    if high <= low:
        return np.zeros(image.shape, np.uint8)
    return np.rint((image - low) * (255 / (high - low))).astype(np.uint8)
