"""Random 3-D training patches from volume-layout cases, as nnU-Net samples them.

```python
from segkit.data import patches, volume_layout

cases, problems = volume_layout.scan_cases("Task01/")
dataset = patches.PatchDataset(
    cases, (64, 64, 64), batch_size=2, steps=250,
    target_spacing=(1.0, 1.0, 1.0),           # resampled once, when cached
    augment=patches.Augment3D(), cache="~/.cache/segkit",
)
images, labels = dataset[0]      # float32 (2, 64, 64, 64, C), float32 (2, 64, 64, 64, 1)
```

**Decoded once.** Each case is read, resampled to ``target_spacing`` (images by cubic
splines, labels by nearest neighbour: `segkit.data.resampling`), normalised per modality
(z-score per case; CT by a plan's clipped percentiles, `segkit.planning.normalisation`) and
stored as ``.npy`` files in the cache directory: the image as ``float32 (X, Y, Z, C)``, the
labels as ``uint8 (X, Y, Z)`` and a sample of each class's voxel positions. Later epochs and
runs read patches from memory-maps, decoding nothing; as in `segkit.data.cache`, an entry's
name hashes the source files' paths, sizes and modification times and the settings, and each
file is written atomically.

**Foreground oversampling.** In every batch the last third of the patches (nnU-Net's
``oversample_foreground_percent`` of 0.33: ``round(batch * (1 - 1/3))`` patches are random)
are centred on a labelled voxel: a foreground class present in the case is drawn, then one of
its voxels. The others lie anywhere inside the volume. Parts of a patch outside the volume
are zero (labels: background).

**Augmentation** (`Augment3D`): mirroring along each axis, rotations by 90 degrees in the
plane of the first two axes (180 when the patch is not square there), scaling about the
patch's centre and, on the image only, brightness, contrast and Gaussian noise.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from segkit._io import atomic_path
from segkit.data import resampling, volume_layout

__all__ = ["FOREGROUND_SHARE", "Augment3D", "PatchDataset", "VolumeCache"]

#: Share of each batch's patches centred on a labelled voxel (nnU-Net's 0.33).
FOREGROUND_SHARE = 1 / 3
#: Labelled voxel positions kept per class and case, for drawing foreground centres.
LOCATIONS_PER_CLASS = 10_000
CACHE_FORMAT = 1
_NPY_LOCK = threading.Lock()  # np.load's header parsing; see segkit.data.cache


def _normalise(image: np.ndarray, schemes: Sequence[dict] | None) -> np.ndarray:
    """Each channel by its scheme: ``"ct"`` (clip, then the plan's mean and std) or z-score."""
    out = np.empty(image.shape, np.float32)
    for c in range(image.shape[-1]):
        channel = image[..., c].astype(np.float32)
        scheme = schemes[c] if schemes else {"scheme": "zscore"}
        if scheme["scheme"] == "ct":
            low, high = scheme["clip"]
            channel = (np.clip(channel, low, high) - scheme["mean"]) / max(scheme["std"], 1e-8)
        else:
            channel = (channel - channel.mean()) / max(float(channel.std()), 1e-8)
        out[..., c] = channel
    return out


class VolumeCache:
    """Cases decoded once (resampled, normalised) and kept as memory-mapped ``.npy`` files.

    Args:
        directory: where the entries live, or None to keep decoded cases in memory.
        target_spacing: voxel size to resample to (mm), or None to keep each case's own.
        normalisation: per modality, a scheme of `segkit.planning.normalisation`; None
            z-scores every modality per case.
    """

    def __init__(
        self,
        directory: str | Path | None,
        target_spacing: Sequence[float] | None = None,
        normalisation: Sequence[dict] | None = None,
    ) -> None:
        self.directory = None if directory is None else Path(directory).expanduser()
        self.target_spacing = None if target_spacing is None else tuple(map(float, target_spacing))
        self.normalisation = list(normalisation) if normalisation else None
        self._memory: dict[str, tuple] = {}
        self._lock = threading.Lock()

    def _key(self, case: volume_layout.Case) -> str:
        sources = []
        for path in (*case.images, case.labels):
            stat = os.stat(path)
            sources.append([os.path.abspath(path), stat.st_size, stat.st_mtime_ns])
        identity = [CACHE_FORMAT, self.target_spacing, self.normalisation, sources]
        return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:32]

    def decode(self, case: volume_layout.Case) -> tuple[np.ndarray, np.ndarray, dict]:
        """Read, resample and normalise one case (no cache).

        Returns:
            ``(image float32 (X, Y, Z, C), labels uint8 (X, Y, Z), locations)``, locations
            being ``{class: int array (N, 3)}`` of up to `LOCATIONS_PER_CLASS` voxel indices
            of each foreground class.
        """
        image, labels = volume_layout.read_case(case.images, case.labels)
        if self.target_spacing is not None:
            image = resampling.resample_volume(image, self.target_spacing)
            labels = resampling.resample_volume(labels, self.target_spacing, kind="labels")
        array = image.array if image.array.ndim == 4 else image.array[..., None]
        rng = np.random.default_rng(0)
        locations = {}
        for value in np.unique(labels.array):
            if value == 0:
                continue
            found = np.argwhere(labels.array == value)
            if len(found) > LOCATIONS_PER_CLASS:
                found = found[rng.choice(len(found), LOCATIONS_PER_CLASS, replace=False)]
            locations[int(value)] = found
        return _normalise(array, self.normalisation), labels.array.astype(np.uint8), locations

    def load(self, case: volume_layout.Case) -> tuple[np.ndarray, np.ndarray, dict]:
        """The decoded case: from the cache (memory-mapped), or decoded and stored on a miss."""
        key = self._key(case)
        with self._lock:  # one thread decodes a case; the others wait for it
            if self.directory is None:
                if key not in self._memory:
                    self._memory[key] = self.decode(case)
                return self._memory[key]
            folder = self.directory / "volumes"
            files = [folder / f"{key}-{part}.npy" for part in ("image", "labels", "locations")]
            if not all(f.exists() for f in files):
                image, labels, locations = self.decode(case)  # raises before writing
                packed = np.concatenate(
                    [np.c_[np.full(len(v), k), v] for k, v in locations.items()]
                    or [np.zeros((0, 4), int)]
                )
                for file, array in zip(files, (image, labels, packed), strict=True):
                    with atomic_path(file) as tmp:
                        np.save(tmp, array)
            with _NPY_LOCK:
                image, labels = (np.load(f, mmap_mode="r") for f in files[:2])
                packed = np.load(files[2])
        locations = {int(k): packed[packed[:, 0] == k, 1:] for k in np.unique(packed[:, 0])}
        return image, labels, locations


@dataclass
class Augment3D:
    """Random 3-D augmentation of an image patch and its labels.

    Attributes:
        flip: chance of mirroring along each axis.
        rotate: chance of a rotation by 90-degree steps in the plane of axes 0 and 1.
        scale: range of the zoom factor (about the patch's centre), or None.
        scale_chance: chance of scaling.
        brightness: range of a factor the image is multiplied by.
        contrast: range of a factor the image's spread about its mean is multiplied by.
        noise: standard deviation of Gaussian noise added (the image is z-scored).
    """

    flip: float = 0.5
    rotate: float = 0.5
    scale: tuple[float, float] | None = (0.85, 1.25)
    scale_chance: float = 0.2
    brightness: tuple[float, float] = (0.75, 1.25)
    contrast: tuple[float, float] = (0.75, 1.25)
    noise: float = 0.1

    def __call__(
        self, image: np.ndarray, labels: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Augment ``image (X, Y, Z, C)`` and ``labels (X, Y, Z)`` alike (intensity: image only)."""
        for axis in range(3):
            if rng.random() < self.flip:
                image, labels = np.flip(image, axis), np.flip(labels, axis)
        if rng.random() < self.rotate:
            turns = int(rng.integers(1, 4)) if image.shape[0] == image.shape[1] else 2
            image = np.rot90(image, turns, axes=(0, 1))
            labels = np.rot90(labels, turns, axes=(0, 1))
        if self.scale is not None and rng.random() < self.scale_chance:
            image, labels = _zoom(image, labels, float(rng.uniform(*self.scale)))
        image = np.ascontiguousarray(image, np.float32)
        mean = image.mean()
        image = (image - mean) * np.float32(rng.uniform(*self.contrast)) + mean
        image = image * np.float32(rng.uniform(*self.brightness))
        if self.noise:
            image = image + rng.normal(0, self.noise, image.shape).astype(np.float32)
        return image, np.ascontiguousarray(labels)


def _zoom(image: np.ndarray, labels: np.ndarray, factor: float):
    """Zoom by ``factor`` about the patch's centre, keeping its shape (>1 enlarges)."""
    from scipy import ndimage

    shape = np.asarray(labels.shape, float)
    centre = (shape - 1) / 2
    offset = centre - centre / factor

    def warp(values, order):
        return ndimage.affine_transform(
            values, np.full(3, 1 / factor), offset=offset, order=order, mode="nearest"
        )

    channels = [warp(image[..., c], 1) for c in range(image.shape[-1])]
    return np.stack(channels, -1), warp(labels, 0)


class PatchDataset(keras.utils.PyDataset):
    """Batches of random 3-D patches from volume-layout cases, a third centred on foreground.

    Args:
        cases: `segkit.data.volume_layout.Case` objects (`volume_layout.scan_cases`).
        patch_size: ``(X, Y, Z)`` voxels.
        batch_size: patches per batch.
        steps: batches per epoch (nnU-Net: 250).
        foreground_share: share of each batch's patches centred on a labelled voxel.
        target_spacing: resample cases to this spacing (mm) when decoding; None keeps theirs.
        normalisation: per modality scheme (a plan's ``normalisation``); None: z-score.
        augment: an `Augment3D`, or None.
        cache: directory of the decoded cases (or a `VolumeCache`); None keeps them in memory.
        seed: the same seed, epoch and batch index always give the same batch.
        workers, use_multiprocessing, max_queue_size: as Keras' ``PyDataset``.

    Each batch is ``(images float32 (B, X, Y, Z, C), labels float32 (B, X, Y, Z, 1))``.
    """

    def __init__(
        self,
        cases: Sequence[volume_layout.Case],
        patch_size: Sequence[int],
        *,
        batch_size: int = 2,
        steps: int = 250,
        foreground_share: float = FOREGROUND_SHARE,
        target_spacing: Sequence[float] | None = None,
        normalisation: Sequence[dict] | None = None,
        augment: Augment3D | None = None,
        cache: str | Path | VolumeCache | None = None,
        seed: int = 0,
        workers: int = 1,
        use_multiprocessing: bool = False,
        max_queue_size: int = 10,
    ) -> None:
        super().__init__(
            workers=workers, use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size
        )
        if not cases:
            raise ValueError("PatchDataset needs at least one case")
        if len(patch_size) != 3 or min(patch_size) < 1:
            raise ValueError(f"patch_size must be three positive sizes, got {tuple(patch_size)}")
        if batch_size < 1 or steps < 1 or not 0 <= foreground_share <= 1:
            raise ValueError("batch_size and steps must be positive, foreground_share in [0, 1]")
        self.cases = list(cases)
        self.patch_size = tuple(int(p) for p in patch_size)
        self.batch_size, self.steps = batch_size, steps
        self.foreground_share = foreground_share
        self.augment = augment
        self.cache = (
            cache
            if isinstance(cache, VolumeCache)
            else VolumeCache(cache, target_spacing, normalisation)
        )
        self.seed = seed
        self.epoch = 0

    @classmethod
    def from_plan(cls, plan: dict | str | Path, cases: Sequence[volume_layout.Case], **kwargs):
        """A dataset with a plan's target spacing, patch, batch and normalisation.

        Args:
            plan: the plan (`segkit.planning.Plan.to_json`) or its ``plan.json`` file.
            cases: the cases to draw from.
            **kwargs: any other argument of `PatchDataset`, or one that replaces the plan's.

        Raises:
            ValueError: a 2-D plan, or cases of another number of modalities than the plan's.
        """
        if not isinstance(plan, dict):
            plan = json.loads(Path(plan).read_text())
        if plan["dims"] != 3:
            raise ValueError(f"the plan is {plan['dims']}-D; 3-D patches need a 3-D plan")
        modalities = plan["modalities"]
        for case in cases:
            if len(case.images) != len(modalities):
                raise ValueError(
                    f"case {case.name} has {len(case.images)} modality(ies); the plan was made "
                    f"for {len(modalities)} ({', '.join(modalities)})"
                )
        settings = dict(
            batch_size=plan["batch_size"],
            target_spacing=plan["target_spacing"],
            normalisation=plan["normalisation"],
        )
        settings.update(kwargs)
        patch_size = settings.pop("patch_size", plan["patch_size"])
        return cls(cases, patch_size, **settings)

    def __len__(self) -> int:
        return self.steps

    def forced_foreground(self, position: int) -> bool:
        """Whether patch ``position`` of a batch is centred on foreground: the last
        ``batch_size - round(batch_size * (1 - foreground_share))`` are (nnU-Net's rule)."""
        return position >= round(self.batch_size * (1 - self.foreground_share))

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of a dataset of {len(self)} batches")
        images, labels = [], []
        for position in range(self.batch_size):
            rng = np.random.default_rng([self.seed, self.epoch, index, position])
            case = self.cases[int(rng.integers(len(self.cases)))]
            image, truth, locations = self.cache.load(case)
            corner = self.corner(truth.shape, locations, self.forced_foreground(position), rng)
            patch_image, patch_labels = _crop(image, truth, corner, self.patch_size)
            if self.augment is not None:
                patch_image, patch_labels = self.augment(patch_image, patch_labels, rng)
            images.append(patch_image)
            labels.append(patch_labels)
        return np.stack(images).astype(np.float32), np.stack(labels)[..., None].astype(np.float32)

    def corner(self, shape, locations: dict, foreground: bool, rng) -> np.ndarray:
        """Where a patch starts: centred on a labelled voxel of a random foreground class when
        ``foreground`` (and the case has one), else anywhere inside the volume (centred when
        the volume is smaller than the patch)."""
        patch = np.asarray(self.patch_size)
        if foreground and locations:
            value = list(locations)[int(rng.integers(len(locations)))]
            voxel = locations[value][int(rng.integers(len(locations[value])))]
            return np.asarray(voxel) - patch // 2
        room = np.asarray(shape) - patch
        return np.where(room >= 0, [rng.integers(max(r, 0) + 1) for r in room], room // 2)

    def on_epoch_end(self) -> None:
        """Move to the next epoch's draws."""
        self.epoch += 1


def _crop(image: np.ndarray, labels: np.ndarray, corner, patch) -> tuple[np.ndarray, np.ndarray]:
    """The patch at ``corner`` (which may reach outside the volume: zeros there)."""
    out_image = np.zeros((*patch, image.shape[-1]), np.float32)
    out_labels = np.zeros(patch, np.uint8)
    source, target = [], []
    for start, size, length in zip(corner, patch, labels.shape, strict=True):
        low, high = max(int(start), 0), min(int(start) + size, length)
        source.append(slice(low, max(high, low)))
        target.append(slice(low - int(start), low - int(start) + max(high - low, 0)))
    out_image[tuple(target)] = image[tuple(source)]
    out_labels[tuple(target)] = labels[tuple(source)]
    return out_image, out_labels
