"""Streaming batches from disk to ``model.fit`` on any Keras backend."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

from segkit.data.augment import Augment, random_crop
from segkit.data.cache import SampleCache
from segkit.data.loading import decoder
from segkit.data.preprocess import Preprocessing, normalize
from segkit.data.samples import Sample


class SegmentationDataset(keras.utils.PyDataset):
    """Batches of ``(images, masks)`` read from disk as they are needed.

    Memory holds a few batches, never the data set. Give a ``cache`` directory so that epochs
    after the first read decoded slices back from memory-mapped ``.npy`` files.

    Args:
        samples: the samples, e.g. ``split.select(samples)[0]``.
        prep: preprocessing; the notebook's defaults when omitted.
        batch_size: samples per batch (the last batch may be smaller).
        shuffle: reshuffle the samples at the end of every epoch.
        augment: paired augmentation for training, e.g. ``Augment()``; ``None`` for none.
        crop: ``(height, width)`` of random training crops taken from each preprocessed
            slice (centred on the tumour 80% of the time), or ``None`` for whole slices.
        seed: seeds shuffling and augmentation: the same seed, epoch and batch index always give
            the same batch, with any number of workers.
        cache: cache directory (or `SampleCache`); ``None`` decodes every time.
        workers: threads or processes decoding batches in parallel (Keras' ``PyDataset``).
        use_multiprocessing: use processes instead of threads for ``workers``.
        max_queue_size: batches prepared ahead of the model.
        replicas: models training in parallel on each global batch (see
            `segkit.distribute`): a last batch smaller than ``batch_size`` is cut down to a
            multiple of them (left out when that is none), so that every replica and every
            process runs the same number of steps.
        process: ``(index, count)``: this process reads only its own contiguous share of
            every batch, the ``index``-th of ``count`` equal parts. ``batch_size`` stays the
            global batch.

    Each batch is ``(images float32 (B, H, W, C), masks float32 (B, H, W, 1))``; masks are float
    so that any loss can use them directly.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        prep: Preprocessing | None = None,
        *,
        batch_size: int = 8,
        shuffle: bool = True,
        augment: Augment | None = None,
        crop: tuple[int, int] | None = None,
        seed: int = 0,
        cache: str | Path | SampleCache | None = None,
        workers: int = 1,
        use_multiprocessing: bool = False,
        max_queue_size: int = 10,
        replicas: int = 1,
        process: tuple[int, int] = (0, 1),
    ) -> None:
        super().__init__(
            workers=workers, use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size
        )
        if not samples:
            raise ValueError("SegmentationDataset needs at least one sample")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, not {batch_size}")
        self.samples = list(samples)
        self.prep = prep or Preprocessing()
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.crop = tuple(crop) if crop else None
        self.seed = seed
        self.cache = cache
        self.replicas = replicas
        self.process_index, self.process_count = process
        if batch_size % replicas:
            raise ValueError(
                f"--batch-size {batch_size} must be a multiple of the number of replicas "
                f"({replicas}, one per device), so that each gets the same share of a batch"
            )
        if replicas % self.process_count:
            raise ValueError(
                f"the number of replicas ({replicas}) must be a multiple of the number of "
                f"processes ({self.process_count}), so that each process gets the same share"
            )
        self.epoch = 0
        self._order = self._epoch_order()

    def __len__(self) -> int:
        rest = len(self.samples) % self.batch_size
        return len(self.samples) // self.batch_size + (rest >= self.replicas)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of a dataset of {len(self)} batches")
        load = decoder(self.prep, self.cache)
        start = index * self.batch_size
        size = min(self.batch_size, len(self.samples) - start)
        size -= size % self.replicas
        share = size // self.process_count
        first = start + self.process_index * share
        images, masks = [], []
        for position in range(first, first + share):
            # One generator per (seed, epoch, sample position): the same draws whichever
            # worker or process builds the batch.
            rng = np.random.default_rng([self.seed, self.epoch, position])
            image, mask = load(self.samples[self._order[position]])
            if self.crop is not None:
                image, mask = random_crop(image, mask, self.crop, rng)
            image = image.astype(np.float32) / np.float32(255)
            if self.augment is not None:
                image, mask = self.augment(image, mask, rng)
            images.append(normalize(image, self.prep))
            masks.append(mask)
        return np.stack(images), np.stack(masks).astype(np.float32)

    def on_epoch_end(self) -> None:
        """Move to the next epoch: new order and new augmentation draws."""
        self.set_epoch(self.epoch + 1)

    def set_epoch(self, epoch: int) -> None:
        """Jump to ``epoch``'s order and augmentation draws, e.g. when resuming training."""
        self.epoch = epoch
        self._order = self._epoch_order()

    def _epoch_order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.samples))
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.samples))
