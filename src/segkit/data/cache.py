"""An on-disk cache of decoded samples, so that a second epoch or run decodes nothing.

Each sample is stored once, resized, as one ``uint8`` ``.npy`` file holding the image channels
followed by the mask channel (``(H, W, C + 1)``), and read back as a memory-map: memory stays
bounded by what is being used, not by the data set.

An entry's name is a hash of the source files' paths, sizes and modification times and of the
preprocessing key, so editing a file or changing the preprocessing makes a new entry instead of
returning stale pixels. Entries are written to a temporary file and renamed into place, so an
interrupted run or a failed read never leaves a broken entry behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import numpy as np

from segkit._io import atomic_path
from segkit.data.preprocess import Preprocessing, decode
from segkit.data.samples import Sample

# np.load parses the .npy header with ast.literal_eval, which is not thread-safe on some
# Python 3.11 releases (python/cpython#106905: "AST constructor recursion depth mismatch"
# stopped training runs that decode with several workers); loads are serialised.
_NPY_HEADER_LOCK = threading.Lock()

# Bump when the stored format or the decoding changes, so old entries are not reused.
CACHE_FORMAT = 1


class SampleCache:
    """Decoded samples kept as ``.npy`` files under ``directory/<prep.key()>/``.

    Args:
        directory: where the entries live; created when needed. Safe to delete at any time.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).expanduser()

    def __repr__(self) -> str:
        return f"SampleCache({str(self.directory)!r})"

    def path(self, sample: Sample, prep: Preprocessing) -> Path:
        """Where the entry for ``sample`` decoded with ``prep`` lives (whether or not it exists)."""
        sources = []
        for path in dict.fromkeys((sample.image, sample.mask)):  # one file for .mat samples
            stat = os.stat(path)
            sources.append([os.path.abspath(path), stat.st_size, stat.st_mtime_ns])
        identity = [CACHE_FORMAT, prep.key(), sample.layout, sources]
        if prep.num_classes is not None and prep.class_source == "sample-label":
            identity.append(sample.label)  # labels.csv may change while the files do not
        identity = json.dumps(identity)
        digest = hashlib.sha256(identity.encode()).hexdigest()[:32]
        return self.directory / prep.key() / f"{digest}.npy"

    def load(self, sample: Sample, prep: Preprocessing) -> tuple[np.ndarray, np.ndarray]:
        """The decoded sample, read from the cache or decoded and stored on a miss.

        Returns:
            ``(image, mask)`` as `segkit.data.preprocess.decode` returns them, as read-only
            memory-maps on a hit.

        Raises:
            DataError: the sample cannot be decoded (nothing is stored then).
        """
        entry = self.path(sample, prep)
        if entry.exists():
            with _NPY_HEADER_LOCK:
                stored = np.load(entry, mmap_mode="r")
        else:
            image, mask = decode(sample, prep)  # raises before anything is written
            stored = np.concatenate([image, mask], axis=-1)
            with atomic_path(entry) as tmp:  # readers see the whole entry or none
                np.save(tmp, stored)
        return stored[..., :-1], stored[..., -1:]
