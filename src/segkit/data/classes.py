"""The classes of a data set: what each value of a label-map mask means.

A binary data set has masks in {0, 1} (files 0/255) and no class list. A multi-class data set
has label maps: masks whose pixel value is the class index, 0 being background. It names its
classes in a ``classes.json`` beside ``images/`` and ``masks/`` (a list of names, index =
value), or is given ``num_classes`` and gets the names ``background, class_1, ...``.

A binary data set whose samples carry a label (``labels.csv``, the Figshare ``.mat`` label
field) becomes a multi-class one with ``classes="tumour-type"``: each mask's foreground takes
the sample's label, so a Figshare slice is background and meningioma, glioma or pituitary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from segkit.data.errors import DataError
from segkit.data.samples import FIGSHARE_LABELS

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
