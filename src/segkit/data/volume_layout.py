"""The volume layout (nnU-Net's and the Medical Segmentation Decathlon's): NIfTI volumes in
``imagesTr/`` with their labels in ``labelsTr/``, read as the 2-D slices segkit trains on.

```text
data/
  imagesTr/case_001.nii.gz         a case of one modality, or
  imagesTr/case_002_0000.nii.gz    a case of several: channel 0 ...
  imagesTr/case_002_0001.nii.gz    ... and channel 1, stacked in this order
  labelsTr/case_001.nii.gz         labels are named after the case, without a channel number
  labelsTr/case_002.nii.gz
  imagesTs/case_101_0000.nii.gz    optional, volumes without labels: for segkit predict
```

Every case must have the same number of modalities, each of the same shape and affine as its
labels. Each slice along a case's axial axis (found from the affine, see
`segkit.data.volumes`) is one sample, whose ``patient`` is the case, so splits keep a volume's
slices together; its key is ``<case>_<index>``, the index along that axis in the file.

Finding samples reads only the files' headers. Decoding reads a whole case at once, as
`segkit predict` reads a volume: each modality mapped to 0..255 by its own percentile window
(`segkit.data.volumes.map_to_uint8`), slices laid out as a viewer shows them, then each slice
resized to the model's size (images bilinearly, masks by area). With a cache folder the decoded
case is stored there as one ``.npy`` file (slices, then image channels and the mask), so later
epochs and runs read no NIfTI file; without one, the last few cases decoded are kept in memory.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import natsort
import numpy as np

from segkit import masks
from segkit._io import atomic_path
from segkit.data import volumes
from segkit.data.errors import DataError, Problem
from segkit.resize import resize_image, resize_labels, resize_mask

IMAGES_DIR, LABELS_DIR, TEST_IMAGES_DIR = "imagesTr", "labelsTr", "imagesTs"
#: A file of one modality of a case: ``<case>_<4 digits>`` (nnU-Net's channel number).
MODALITY_NAME = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
#: Cases decoded without a cache folder that stay in memory.
MEMORY_CASES = 4
# Bump when the stored format or the decoding changes, so old cache entries are not reused.
CACHE_FORMAT = 1


@dataclass(frozen=True)
class Case:
    """One volume of the layout, as its headers describe it.

    Attributes:
        name: the case (the label file's name less ``.nii.gz``).
        images: its image files, one per modality, in channel order.
        labels: its label file.
        slices: how many slices it has along its axial axis.
    """

    name: str
    images: tuple[Path, ...]
    labels: Path
    slices: int


def is_volume_layout(root: str | Path) -> bool:
    """Whether ``root`` holds ``imagesTr/`` and ``labelsTr/`` folders."""
    root = Path(root)
    return (root / IMAGES_DIR).is_dir() and (root / LABELS_DIR).is_dir()


def group_modalities(files: Sequence[Path], cases: Sequence[str] = ()) -> dict[str, list[Path]]:
    """Group NIfTI files into cases: ``<case>_0000``, ``<case>_0001``, ... are one case's
    modalities, in channel order; a file of another name is a case of its own.

    Args:
        files: NIfTI files.
        cases: names known to be cases (the label files' names): a file named exactly so is a
            case of its own even when its name ends in four digits.

    Returns:
        ``{case: files}`` in natural order of the cases. A name ending in four digits whose
        numbers do not run 0000, 0001, ... (``scan_0007`` alone, say) is a case of its own.
    """
    known = set(cases)
    channels: dict[str, dict[int, Path]] = {}
    single: dict[str, list[Path]] = {}
    for path in files:
        name = volumes.volume_name(path)
        match = MODALITY_NAME.match(name)
        if name in known or match is None:
            single[name] = [path]
        else:
            channels.setdefault(match["case"], {})[int(match["channel"])] = path
    grouped = dict(single)
    for case, found in channels.items():
        if sorted(found) == list(range(len(found))):
            grouped[case] = [found[c] for c in range(len(found))]
        else:  # numbered files, but not channels: each is a volume of its own
            grouped.update({volumes.volume_name(p): [p] for p in found.values()})
    return {case: grouped[case] for case in natsort.natsorted(grouped)}


def scan_cases(root: str | Path) -> tuple[list[Case], list[Problem]]:
    """The complete cases under ``root`` (from headers only) and every problem found.

    Problems, each naming its file: an image without labels, labels without an image, a case
    whose channel numbers have a gap, a case of a modality count other than the rest's, a file
    that cannot be read or is not 3-D, and a modality or label file whose shape or affine
    differs from the case's first image.
    """
    root = Path(root)
    labels = {volumes.volume_name(p): p for p in volumes.nifti_files(root / LABELS_DIR)}
    problems: list[Problem] = []
    found: dict[str, dict[int | None, Path]] = {}
    for path in volumes.nifti_files(root / IMAGES_DIR):
        name = volumes.volume_name(path)
        match = MODALITY_NAME.match(name)
        if name in labels:  # a case of one modality, named as its labels
            found.setdefault(name, {})[None] = path
        elif match and match["case"] in labels:
            found.setdefault(match["case"], {})[int(match["channel"])] = path
        else:
            case = match["case"] if match else name
            problems.append(
                Problem(str(path), f"no label file {LABELS_DIR}/{case}.nii.gz for this image")
            )
    grouped: dict[str, list[Path]] = {}
    for case, channels in found.items():
        numbers = sorted(c for c in channels if c is not None)
        if list(channels) == [None]:
            grouped[case] = [channels[None]]
        elif None not in channels and numbers == list(range(len(numbers))):
            grouped[case] = [channels[c] for c in numbers]
        else:
            shown = ", ".join(p.name for p in natsort.natsorted(channels.values()))
            problems.append(
                Problem(
                    str(labels[case]),
                    f"the images of case {case} ({shown}) are not one file {case}.nii.gz or "
                    f"channels {case}_0000, {case}_0001, ... without a gap",
                )
            )
    for case, path in labels.items():
        if case not in found:
            problems.append(Problem(str(path), f"label file without an image in {IMAGES_DIR}/"))
    usual = Counter(len(files) for files in grouped.values()).most_common(1)
    cases = []
    for case, files in natsort.natsorted(grouped.items(), key=lambda item: item[0]):
        if len(files) != usual[0][0]:
            problems.append(
                Problem(
                    str(files[0]),
                    f"case {case} has {len(files)} modality(ies) ("
                    f"{', '.join(p.name for p in files)}), the other cases {usual[0][0]}",
                )
            )
            continue
        case_found = _check_case(case, files, labels[case], problems)
        if case_found is not None:
            cases.append(case_found)
    return cases, problems


def _check_case(name: str, images: list[Path], labels: Path, problems: list[Problem]):
    """The `Case`, from its files' headers; None (and a problem) when they do not fit."""
    try:
        geometry = [volumes.read_geometry(path) for path in (*images, labels)]
    except DataError as exc:
        problems.append(Problem(str(exc.path), str(exc)))
        return None
    (shape, affine), *others = geometry
    for path, (other_shape, other_affine) in zip((*images[1:], labels), others, strict=True):
        problem = volumes.misalignment(other_shape, other_affine, shape, affine, images[0])
        if problem:
            what = "label file" if path == labels else "modality"
            problems.append(Problem(str(path), f"{what} {path.name} {problem}"))
            return None
    return Case(name, tuple(images), labels, shape[volumes.axial_axis(affine)])


def read_case(images: Sequence[Path], labels: Path | None = None):
    """A case's image (modalities stacked as channels) and, when given, its labels.

    Returns:
        ``(image, labels)``: `segkit.data.volumes.Volume` objects, labels ``uint8`` and checked
        against the image; labels None when not given.

    Raises:
        DataError: a file that cannot be read, or that does not fit the case's first image.
    """
    image = volumes.stack_modalities([volumes.read_volume(path) for path in images])
    return image, None if labels is None else volumes.read_labels(labels, image)


def pick_channels(slices: np.ndarray, channels: int | tuple, source: Path) -> np.ndarray:
    """The channels a model reads, from ``(N, H, W, M)`` slices of a case of M modalities.

    ``channels`` is as `segkit.data.Preprocessing`'s: the count M takes every modality; 1 takes
    the first (``_0000``); 3 repeats a single modality, as for a greyscale image; a tuple of
    indices picks and orders modalities.

    Raises:
        DataError: channels the case does not have, naming ``source``.
    """
    count = slices.shape[-1]
    if isinstance(channels, tuple):
        if any(isinstance(c, str) for c in channels):
            raise DataError(
                f"named channels {channels} exist only in LGG data; the channels of {source} "
                "are its modalities, by index (0 for _0000, ...)",
                source,
            )
        if max(channels) >= count:
            raise DataError(f"{source} has {count} modality(ies); asked for {channels}", source)
        return np.ascontiguousarray(slices[..., list(channels)])
    if channels == count:
        return slices
    if channels == 1:
        return slices[..., :1]
    if count == 1:
        return np.repeat(slices, channels, axis=-1)
    raise DataError(
        f"{source} has {count} modalities; cannot make {channels} channels (pick modalities by "
        "index, e.g. channels 0,1)",
        source,
    )


def mask_values(labels: np.ndarray, source: Path, prep) -> np.ndarray:
    """A label volume's values as a model's targets: {0, 1} for a binary ``prep`` (the file
    holds 0/1 or 0/255), class indices below ``prep.num_classes`` (and ``ignore_index``) for
    label maps.

    Raises:
        DataError: other values, naming the file.
    """
    if prep.num_classes is not None and prep.class_source != "mask":
        raise DataError(
            f"{source}: a volume's classes are the values of its labels; sample labels "
            f"(class source {prep.class_source!r}) exist only in 2-D data sets",
            source,
        )
    try:
        if prep.num_classes is None:
            return masks.from_pixel_values(labels)
        return masks.from_label_values(labels, prep.num_classes, prep.ignore_index)
    except ValueError as exc:
        hint = masks.label_map_hint(labels) if not prep.num_classes else ""
        raise DataError(f"label file {source} is {exc}{hint}", source) from None


def decode_case(images: Sequence[Path], labels: Path, prep) -> np.ndarray:
    """Every slice of a case at ``prep``'s size, image channels then the mask.

    Args:
        images: the case's image files, one per modality.
        labels: its label file.
        prep: a `segkit.data.Preprocessing`.

    Returns:
        ``uint8 (N, H, W, C + 1)``, slice ``i`` being the slice at index ``i`` along the axial
        axis in the file's voxel order.

    Raises:
        DataError: as `read_case`, `pick_channels` and `mask_values`.
    """
    image, truth = read_case(images, labels)
    slicing = volumes.slicing(image)
    mapped, _ = volumes.map_to_uint8(image.array)
    stack = slicing.slices(mapped)
    stack = pick_channels(stack if stack.ndim == 4 else stack[..., None], prep.channels, images[0])
    targets = slicing.slices(mask_values(truth.array, labels, prep))
    resize = resize_mask if prep.num_classes is None else resize_labels
    decoded = np.empty((len(stack), *prep.size, stack.shape[-1] + 1), np.uint8)
    for position, index in enumerate(slicing.indices):
        decoded[index, ..., :-1] = resize_image(stack[position], prep.size)
        decoded[index, ..., -1] = resize(targets[position], prep.size)
    return decoded


def decode_slice(sample, prep, cache_dir: str | Path | None = None):
    """One sample of the layout at ``prep``'s size: ``(uint8 (H, W, C) image, uint8 (H, W, 1)
    mask)``, as `segkit.data.preprocess.decode` gives a 2-D sample.

    The whole case is decoded on the first request (`decode_case`) and kept: in ``cache_dir``
    when given, read back as a memory-map; else in memory, for the last `MEMORY_CASES` cases.
    """
    sources = _sources(sample.modalities, sample.mask)
    if cache_dir is None:
        # By the key too: it names ignore_index, which the preprocessing's equality leaves out.
        stored = _decoded_in_memory(sources, prep, prep.key())
    else:
        stored = _decoded_on_disk(sources, prep, Path(cache_dir))
    row = stored[sample.slice]
    return row[..., :-1], row[..., -1:]


def _sources(images: Sequence[Path], labels: Path) -> tuple:
    """The files of a case, each with its size and modification time: a file changed on
    disk makes another entry instead of returning stale pixels."""
    found = []
    for path in (*images, labels):
        stat = os.stat(path)
        found.append((os.path.abspath(path), stat.st_size, stat.st_mtime_ns))
    return tuple(found)


@functools.lru_cache(maxsize=MEMORY_CASES)
def _decoded_in_memory(sources: tuple, prep, key: str) -> np.ndarray:
    *images, labels = (Path(path) for path, _, _ in sources)
    decoded = decode_case(images, labels, prep)
    decoded.flags.writeable = False  # shared by every caller
    return decoded


_locks: dict[Path, threading.Lock] = {}
_locks_lock = threading.Lock()


def _decoded_on_disk(sources: tuple, prep, cache_dir: Path) -> np.ndarray:
    identity = json.dumps([CACHE_FORMAT, prep.key(), volumes.PERCENTILES, sources])
    digest = hashlib.sha256(identity.encode()).hexdigest()[:32]
    entry = cache_dir.expanduser() / prep.key() / f"volume-{digest}.npy"
    with _locks_lock:
        lock = _locks.setdefault(entry, threading.Lock())
    with lock:  # one thread decodes a case; the others wait and read its entry
        if not entry.exists():
            *images, labels = (Path(path) for path, _, _ in sources)
            decoded = decode_case(images, labels, prep)  # raises before anything is written
            with atomic_path(entry) as tmp:
                np.save(tmp, decoded)
    return np.load(entry, mmap_mode="r")


def foreground_slices(labels: Path) -> np.ndarray:
    """Which slices of a label file hold foreground (any non-zero label), by index along the
    axial axis in the file.

    Raises:
        DataError: as `segkit.data.volumes.read_labels`.
    """
    truth = volumes.read_labels(labels)
    axis = truth.axial_axis
    return np.moveaxis(truth.array, axis, 0).reshape(truth.shape[axis], -1).any(axis=1)
