"""The classes of a data set: what each value of a label-map mask means.

A binary data set has masks in {0, 1} (files 0/255) and no class list. A multi-class data set
has label maps: masks whose pixel value is the class index, 0 being background. It names its
classes in a ``classes.json`` beside ``images/`` and ``masks/`` (a list of names, index =
value), or is given ``num_classes`` and gets the names ``background, class_1, ...``.

A binary data set whose samples carry a label (``labels.csv``, the Figshare ``.mat`` label
field) becomes a multi-class one with ``classes="tumour-type"``: each mask's foreground takes
the sample's label, so a Figshare slice is background and meningioma, glioma or pituitary.

Regions (nnU-Net's) are overlapping sets of the labels of one label map, trained as one sigmoid
channel each: BraTS' ``"whole=1,2,3;core=1,3;enhancing=3"``, or on the tumour types
``"tumour=1,2,3;glioma=2"`` (`parse_regions`). The conversions between a label map and its
region channels are `segkit.masks.regions_from_labels` and `segkit.masks.labels_from_regions`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from segkit.data.errors import DataError
from segkit.data.samples import FIGSHARE_LABELS
from segkit.masks import check_regions, paint_order

#: The file beside ``images/`` and ``masks/`` that names a data set's classes.
CLASSES_FILE = "classes.json"

#: ``classes=`` value that colours each binary mask with its sample's label.
TUMOUR_TYPE = "tumour-type"

#: Where a label map's values come from: the mask file's pixels, or the sample's label.
CLASS_SOURCES = ("mask", "sample-label")


@dataclass(frozen=True)
class Classes:
    """The classes of a multi-class data set.

    Attributes:
        names: one name per class, index = value in the label maps; ``names[0]`` is background.
        source: ``"mask"`` (mask pixels are class indices) or ``"sample-label"`` (a binary
            mask whose foreground takes the sample's label).
    """

    names: tuple[str, ...]
    source: str = "mask"

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.names)
        if len(names) < 2:
            raise ValueError(f"a multi-class data set needs at least 2 classes, got {names}")
        if len(set(names)) != len(names):
            raise ValueError(f"class names must differ, got {names}")
        if self.source not in CLASS_SOURCES:
            raise ValueError(f"source must be one of {CLASS_SOURCES}, not {self.source!r}")
        object.__setattr__(self, "names", names)

    @property
    def num_classes(self) -> int:
        """Number of classes, background included."""
        return len(self.names)


def default_names(num_classes: int) -> tuple[str, ...]:
    """``("background", "class_1", ..., "class_<K-1>")``."""
    return ("background", *(f"class_{i}" for i in range(1, num_classes)))


def tumour_types() -> Classes:
    """The Figshare tumour types: background, meningioma, glioma, pituitary, from each
    sample's label."""
    names = ("background", *(FIGSHARE_LABELS[i] for i in sorted(FIGSHARE_LABELS)))
    return Classes(names, "sample-label")


def read_classes_file(root: str | Path) -> tuple[str, ...] | None:
    """The class names in ``root/classes.json``, or None when there is no such file.

    Raises:
        DataError: the file is not a JSON list of at least two distinct names.
    """
    path = Path(root) / CLASSES_FILE
    if not path.is_file():
        return None
    try:
        names = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not JSON ({exc})", path) from None
    if (
        not isinstance(names, list)
        or len(names) < 2
        or not all(isinstance(n, str) and n for n in names)
        or len(set(names)) != len(names)
    ):
        raise DataError(
            f'{path}: expected a list of at least two distinct names, e.g. ["background", '
            '"tumour"]',
            path,
        )
    return tuple(names)


def resolve_classes(
    root: str | Path | None = None,
    num_classes: int | None = None,
    classes: str | list[str] | tuple[str, ...] | None = None,
) -> Classes | None:
    """The classes of a data set from what the user said and what the folder holds.

    Args:
        root: the data folder (its ``classes.json`` is read when there is one).
        num_classes: number of classes, background included; ``None`` or 1: binary, unless
            ``classes`` or a ``classes.json`` says otherwise.
        classes: ``"tumour-type"``, or the class names.

    Returns:
        The classes, or None for a binary data set.

    Raises:
        ValueError: ``num_classes`` disagrees with the names given or found.
        DataError: an unreadable ``classes.json``.
    """
    if num_classes is not None and (int(num_classes) != num_classes or num_classes < 1):
        raise ValueError(f"num_classes must be a positive integer, not {num_classes!r}")
    if classes == TUMOUR_TYPE:
        found, where = tumour_types(), f"classes={TUMOUR_TYPE!r}"
    elif isinstance(classes, str):
        raise ValueError(f"classes must be {TUMOUR_TYPE!r} or a list of names, not {classes!r}")
    elif classes is not None:
        found, where = Classes(tuple(classes)), "classes"
    elif root is not None and (names := read_classes_file(root)) is not None:
        found, where = Classes(names), str(Path(root) / CLASSES_FILE)
    elif num_classes is None or num_classes == 1:
        return None
    else:
        return Classes(default_names(int(num_classes)))
    if num_classes is not None and num_classes != found.num_classes:
        raise ValueError(f"num_classes={num_classes} but {where} names {found.num_classes} classes")
    return found


@dataclass(frozen=True)
class Regions:
    """Overlapping regions of a label map, one sigmoid channel each (mode ``multilabel``).

    Attributes:
        names: one name per region, in channel order.
        labels: the labels each region holds, e.g. ``((1, 2, 3), (2,))``.
    """

    names: tuple[str, ...]
    labels: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        labels = check_regions(self.labels)
        names = tuple(str(n) for n in self.names)
        if len(names) != len(labels):
            raise ValueError(f"{len(names)} region names for {len(labels)} regions")
        if len(set(names)) != len(names) or not all(names):
            raise ValueError(f"region names must be distinct and not empty, got {names}")
        paint_order(labels)  # a region that could never be painted is refused here
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "labels", labels)

    def __str__(self) -> str:
        """The form `parse_regions` reads, e.g. ``"tumour=1,2,3;glioma=2"``."""
        return ";".join(
            f"{name}={','.join(map(str, labels))}"
            for name, labels in zip(self.names, self.labels, strict=True)
        )


def parse_regions(
    spec: str | Mapping[str, Sequence[int]] | Regions,
    class_names: Sequence[str] | None = None,
) -> Regions:
    """Regions from ``"tumour=1,2,3;glioma=2"``: ``;`` between regions, ``,`` between labels.

    A region's name is optional: ``"1,2,3;2"`` names each by its classes joined with ``+``
    (``"meningioma+glioma+pituitary"``, ``"glioma"``), or by its labels when there are no class
    names (``"1+2+3"``).

    Args:
        spec: the regions as text, a ``{name: labels}`` mapping, or `Regions`.
        class_names: the label map's classes (index = label), to name regions and check labels.

    Raises:
        ValueError: unreadable text, a label that is no class, or regions `Regions` refuses;
            the message quotes the part at fault.
    """
    if isinstance(spec, Regions):
        regions = spec
    elif isinstance(spec, Mapping):
        regions = Regions(tuple(spec), tuple(tuple(labels) for labels in spec.values()))
    else:
        names, labels = [], []
        for part in str(spec).split(";"):
            name, equals, numbers = part.rpartition("=")
            try:
                region = tuple(int(n) for n in numbers.split(","))
            except ValueError:
                raise ValueError(
                    f"regions: cannot read {part.strip()!r}; write each region as NAME=L,L,... "
                    'or L,L,..., separated by ";", e.g. "tumour=1,2,3;glioma=2"'
                ) from None
            labels.append(region)
            names.append(name.strip() if equals else _region_name(region, class_names))
        regions = Regions(tuple(names), tuple(labels))
    if class_names is not None:
        for name, region in zip(regions.names, regions.labels, strict=True):
            if max(region) >= len(class_names):
                raise ValueError(
                    f"region {name!r} holds the label {max(region)}; the label maps' classes are "
                    f"0..{len(class_names) - 1}"
                )
    return regions


def _region_name(labels: tuple[int, ...], class_names: Sequence[str] | None) -> str:
    if class_names is not None and max(labels) < len(class_names):
        return "+".join(class_names[label] for label in labels)
    return "+".join(str(label) for label in labels)
