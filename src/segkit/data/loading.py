"""Loading many samples at once into numpy arrays, decoding in parallel; the one decoder of
every layout's samples."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from segkit.data import volume_layout
from segkit.data.cache import SampleCache
from segkit.data.preprocess import Preprocessing, decode, normalize
from segkit.data.samples import Sample


def as_cache(cache: str | Path | SampleCache | None) -> SampleCache | None:
    """A `SampleCache` from a directory, an existing cache, or ``None`` (no cache)."""
    if cache is None or isinstance(cache, SampleCache):
        return cache
    return SampleCache(cache)


def decoder(prep: Preprocessing, cache: str | Path | SampleCache | None = None):
    """A function ``sample -> (uint8 image, uint8 mask)`` that uses ``cache`` when given.

    Samples of the ``"volumes"`` layout are slices of NIfTI volumes: a whole volume is decoded
    at once and kept in the cache's folder (in memory without a cache), see
    `segkit.data.volume_layout`.
    """
    cache = as_cache(cache)

    def load(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
        if sample.layout == "volumes":
            return volume_layout.decode_slice(sample, prep, cache and cache.directory)
        return decode(sample, prep) if cache is None else cache.load(sample, prep)

    return load


def load_arrays(
    samples: Sequence[Sample],
    prep: Preprocessing | None = None,
    *,
    cache: str | Path | SampleCache | None = None,
    workers: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Load all ``samples`` into memory, for data sets small enough to hold at once.

    Args:
        samples: the samples, e.g. from `segkit.data.find_samples`.
        prep: preprocessing; the notebook's defaults (256x256 greyscale, divided by 255) when
            omitted.
        cache: a cache directory (or `SampleCache`) to read from and fill; ``None`` decodes
            every file.
        workers: decoding threads (Pillow, tifffile and h5py release the GIL while decoding);
            default: the number of CPUs, at most 8.

    Returns:
        ``(X, Y)``: images ``float32 (N, H, W, C)``, masks ``uint8 (N, H, W, 1)`` in {0, 1}.

    Raises:
        DataError: a sample cannot be read (the message names the file).
    """
    prep = prep or Preprocessing()
    load = decoder(prep, cache)
    height, width = prep.size
    images = np.empty((len(samples), height, width, prep.n_channels), np.float32)
    masks = np.empty((len(samples), height, width, 1), np.uint8)

    def fill(i: int) -> None:
        image, mask = load(samples[i])
        normalize(image, prep, out=images[i])
        masks[i] = mask

    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        # list() re-raises the first failure here, in the caller's thread.
        list(pool.map(fill, range(len(samples))))
    return images, masks
