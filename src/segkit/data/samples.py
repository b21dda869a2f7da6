"""Finding image/mask pairs on disk, in the four layouts segkit reads.

- ``"folders"``: ``images/N.png`` beside ``masks/N_mask.png``, optional ``labels.csv``
  (the Kaggle copies of the Figshare data set).
- ``"figshare-mat"``: the original Figshare release, one MATLAB v7.3 file per slice holding
  image, mask, label and patient ID.
- ``"lgg"``: the LGG ``kaggle_3m`` release, one folder per patient of
  ``<patient>_<k>.tif`` slices beside ``<patient>_<k>_mask.tif``.
- ``"volumes"``: NIfTI volumes in ``imagesTr/`` with their labels in ``labelsTr/`` (nnU-Net's
  and the Medical Segmentation Decathlon's layout), one sample per slice along each volume's
  axial axis (see `segkit.data.volume_layout`).

Finding samples only lists files (and, for ``.mat`` files, reads the small label and patient
fields; for volumes, the NIfTI headers); pixels are read later, by `segkit.data.preprocess`
(`segkit.data.volume_layout` for volumes).

``DataError``, ``Problem`` and ``IMAGE_SUFFIXES`` are re-exported here from the modules that
define them (`segkit.data.errors`, `segkit.data.imagefiles`).
"""

from __future__ import annotations

import csv
import glob
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import natsort

from segkit.data import volume_layout
from segkit.data.errors import DataError, Problem
from segkit.data.imagefiles import IMAGE_SUFFIXES, read_mat_fields

#: Layout names accepted by `find_samples` (besides ``"auto"``).
LAYOUTS = ("folders", "figshare-mat", "lgg", "volumes")

# "1220 (1).png": the name a browser or file manager gives a second download of 1220.png.
_COPY_PATTERN = re.compile(r"^(?P<key>.+?) \(\d+\)$")


@dataclass(frozen=True)
class Sample:
    """One image/mask pair and what is known about it.

    Attributes:
        key: identifier, unique within a data set and stable across machines (the image's file
            stem, e.g. ``"1220"`` or ``"TCGA_CS_4943_20000902_12"``); split manifests store it.
        image: path of the image file.
        mask: path of the mask file (the same ``.mat`` file as ``image`` for Figshare originals).
        layout: the layout the sample was found in, one of `LAYOUTS`.
        label: class label when known (Figshare: 1 meningioma, 2 glioma, 3 pituitary).
        label_name: the label's name when known.
        patient: patient identifier when known (LGG folder name, Figshare ``.mat`` PID; for
            volumes, the case: a volume is a patient).
        slice: volumes: the slice's index along the volume's axial axis, in the file.
        modalities: volumes: the case's image files, one per channel (``image`` is the first).
    """

    key: str
    image: Path
    mask: Path
    layout: str
    label: int | None = None
    label_name: str | None = None
    patient: str | None = None
    slice: int | None = None
    modalities: tuple[Path, ...] = ()


OnProblem = Literal["error", "skip"]


def find_samples(
    root: str | Path,
    layout: str = "auto",
    *,
    images_dir: str = "images",
    masks_dir: str = "masks",
    mask_suffix: str = "_mask",
    on_problem: OnProblem = "error",
) -> list[Sample]:
    """List the image/mask pairs under ``root``, naturally sorted by key.

    Args:
        root: the data folder.
        layout: ``"auto"`` (detect), or one of `LAYOUTS`.
        images_dir: ``"folders"`` layout: name of the image folder.
        masks_dir: ``"folders"`` layout: name of the mask folder.
        mask_suffix: ``"folders"`` layout: what a mask's stem adds to its image's stem.
        on_problem: ``"error"`` raises on any missing, extra or duplicate file; ``"skip"`` leaves
            those files out and returns the complete pairs.

    Returns:
        The samples, in natural order of their keys (``2`` before ``10``).

    Raises:
        DataError: unknown or undetectable layout, no samples, or (with ``on_problem="error"``)
            any problem; the message lists every file at fault.
    """
    if on_problem not in ("error", "skip"):
        raise ValueError(f"on_problem must be 'error' or 'skip', not {on_problem!r}")
    samples, problems = scan(
        root, layout, images_dir=images_dir, masks_dir=masks_dir, mask_suffix=mask_suffix
    )
    if problems and on_problem == "error":
        listing = "\n".join(f"  {p}" for p in problems)
        raise DataError(
            f"{len(problems)} problem(s) in {root} (--on-problem skip on the command line, "
            f"on_problem='skip' in Python, leaves these files out):\n{listing}"
        )
    return samples


def scan(
    root: str | Path,
    layout: str = "auto",
    *,
    images_dir: str = "images",
    masks_dir: str = "masks",
    mask_suffix: str = "_mask",
) -> tuple[list[Sample], list[Problem]]:
    """Like `find_samples`, but return the problems instead of raising on them.

    Returns:
        ``(samples, problems)``: the complete pairs, and every missing, extra or duplicate file.

    Raises:
        DataError: unknown or undetectable layout, or no samples at all.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"not a folder: {root}")
    if layout == "auto":
        layout = detect_layout(root, images_dir=images_dir, masks_dir=masks_dir)
    if layout == "folders":
        samples, problems = _scan_folders(root, images_dir, masks_dir, mask_suffix)
    elif layout == "figshare-mat":
        samples, problems = _scan_figshare_mat(root)
    elif layout == "lgg":
        samples, problems = _scan_lgg(root)
    elif layout == "volumes":
        samples, problems = _scan_volumes(root)
    else:
        raise DataError(f"unknown layout {layout!r}; expected 'auto' or one of {LAYOUTS}")
    if not samples and not problems:
        raise DataError(f"no samples found in {root} (layout {layout!r})")
    samples = natsort.natsorted(samples, key=lambda s: s.key)
    return samples, problems


def detect_layout(root: str | Path, *, images_dir: str = "images", masks_dir: str = "masks") -> str:
    """Guess the layout of ``root`` from the files in it.

    Raises:
        DataError: the folder is empty or matches no known layout (the message points to a
            subfolder that has one, such as ``kaggle_3m/`` below the LGG download).
    """
    root = Path(root)
    found = _layout_of(root, images_dir, masks_dir)
    if found:
        return found
    if not any(root.iterdir()):
        raise DataError(f"empty folder: {root}")
    hint = next(
        (
            f"; {child} holds data in the {layout!r} layout: did you mean that folder?"
            for child in sorted(d for d in root.iterdir() if d.is_dir())
            if (layout := _layout_of(child, images_dir, masks_dir))
        ),
        "",
    )
    raise DataError(
        f"cannot tell the layout of {root}: expected {images_dir}/ and {masks_dir}/ folders, "
        f"Figshare .mat files, LGG patient folders of *_mask.tif slices, or "
        f"{volume_layout.IMAGES_DIR}/ and {volume_layout.LABELS_DIR}/ folders of NIfTI "
        f"volumes{hint}"
    )


def _layout_of(root: Path, images_dir: str, masks_dir: str) -> str | None:
    if volume_layout.is_volume_layout(root):
        return "volumes"
    if (root / images_dir).is_dir() and (root / masks_dir).is_dir():
        return "folders"
    if next(root.rglob("*.mat"), None) is not None:
        return "figshare-mat"
    if any(next(d.glob("*_mask.tif"), None) for d in root.iterdir() if d.is_dir()):
        return "lgg"
    return None


def _image_files(folder: Path) -> list[Path]:
    # Only files: the Kaggle copy has subfolders (saliency maps) that are not part of the pairs.
    return [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]


def _by_key(files: list[Path], key_of, problems: list[Problem]) -> dict[str, Path]:
    """Index files by key, reporting copies (``1 (1).png``) and repeated keys as duplicates."""
    found: dict[str, Path] = {}
    copies = []
    for path in natsort.natsorted(files, key=lambda p: p.name):
        key = key_of(path)
        if key is None:
            continue
        if _COPY_PATTERN.match(key):
            copies.append((key, path))
        elif key in found:
            problems.append(Problem(str(path), f"duplicate of {found[key].name}"))
        else:
            found[key] = path
    for key, path in copies:
        original = _COPY_PATTERN.match(key)["key"]
        of = f"{found[original].name}" if original in found else original
        problems.append(Problem(str(path), f"duplicate of {of}"))
    return found


def _scan_folders(
    root: Path, images_dir: str, masks_dir: str, mask_suffix: str
) -> tuple[list[Sample], list[Problem]]:
    image_folder, mask_folder = root / images_dir, root / masks_dir
    for folder in (image_folder, mask_folder):
        if not folder.is_dir():
            raise DataError(f"missing folder {folder} (layout 'folders')")
    problems: list[Problem] = []
    images = _by_key(_image_files(image_folder), lambda p: p.stem, problems)

    def mask_key(path: Path) -> str | None:
        if not path.stem.endswith(mask_suffix):
            problems.append(Problem(str(path), f"extra file: name does not end in {mask_suffix}"))
            return None
        return path.stem[: -len(mask_suffix)]

    masks = _by_key(_image_files(mask_folder), mask_key, problems)
    labels = _read_labels(root / "labels.csv")
    samples = []
    for key, image in images.items():
        if key not in masks:
            problems.append(
                Problem(str(image), f"missing mask {key}{mask_suffix}.* in {masks_dir}/")
            )
            continue
        label, label_name = labels.get(key, (None, None))
        samples.append(Sample(key, image, masks[key], "folders", label, label_name))
    for key, mask in masks.items():
        if key not in images:
            problems.append(Problem(str(mask), f"extra mask: no image {key}.* in {images_dir}/"))
    return samples, problems


def _read_labels(path: Path) -> dict[str, tuple[int, str | None]]:
    """``labels.csv`` (``index,label,label_name``) as ``{key: (label, label_name)}``."""
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and not {"index", "label"} <= rows[0].keys():
        raise DataError(f"{path}: expected the columns index,label,label_name")
    try:
        return {r["index"]: (int(r["label"]), r.get("label_name") or None) for r in rows}
    except ValueError as exc:
        raise DataError(f"{path}: a label is not an integer ({exc})") from None


def _scan_figshare_mat(root: Path) -> tuple[list[Sample], list[Problem]]:
    problems: list[Problem] = []
    # The release unzips into four folders (brainTumorDataPublic_1-766, ...): search below root.
    files = _by_key(list(root.rglob("*.mat")), lambda p: p.stem, problems)
    samples = []
    for key, path in files.items():
        try:
            label, patient = read_mat_fields(path)
        except DataError as exc:
            problems.append(Problem(str(path), f"unreadable: {exc}"))
            continue
        samples.append(
            Sample(key, path, path, "figshare-mat", label, FIGSHARE_LABELS.get(label), patient)
        )
    return samples, problems


#: Figshare tumour classes by label.
FIGSHARE_LABELS = {1: "meningioma", 2: "glioma", 3: "pituitary"}


def _scan_lgg(root: Path) -> tuple[list[Sample], list[Problem]]:
    problems: list[Problem] = []
    samples = []
    for folder in natsort.natsorted(
        (d for d in root.iterdir() if d.is_dir()), key=lambda d: d.name
    ):
        tifs = [
            p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in (".tif", ".tiff")
        ]
        # Through _by_key, so a slice saved twice (``_1.tif`` and ``_1.tiff``) is reported.
        masks = _by_key(
            [p for p in tifs if p.stem.endswith("_mask")],
            lambda p: p.stem[: -len("_mask")],
            problems,
        )
        images = _by_key(
            [p for p in tifs if not p.stem.endswith("_mask")], lambda p: p.stem, problems
        )
        for key, image in images.items():
            if key not in masks:
                problems.append(Problem(str(image), f"missing mask {key}_mask{image.suffix}"))
            else:
                samples.append(Sample(key, image, masks[key], "lgg", patient=folder.name))
        for key, mask in masks.items():
            if key not in images:
                problems.append(Problem(str(mask), f"extra mask: no image {key}{mask.suffix}"))
    return samples, problems


def _scan_volumes(root: Path) -> tuple[list[Sample], list[Problem]]:
    cases, problems = volume_layout.scan_cases(root)
    samples = [
        Sample(
            f"{case.name}_{index}",
            case.images[0],
            case.labels,
            "volumes",
            patient=case.name,
            slice=index,
            modalities=case.images,
        )
        for case in cases
        for index in range(case.slices)
    ]
    return samples, problems


def image_files(inputs: Iterable[str | Path]) -> list[Path]:
    """Expand files and folders (their image files, not subfolders) into a list of images.

    Folders are listed in natural order; mask files (``*_mask.*``) inside a folder are skipped:
    they are answers, not inputs.

    Raises:
        FileNotFoundError: an input does not exist, or there are no images at all.
        ValueError: two inputs share a name (their outputs would overwrite each other).
    """
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = [p for p in _image_files(path) if not p.stem.endswith("_mask")]
            files.extend(natsort.natsorted(found, key=str))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"input {path} does not exist")
    if not files:
        hint = "".join(
            f"; {Path(i) / 'images'} holds images: did you mean that folder?"
            for i in inputs
            if (Path(i) / "images").is_dir()
        )
        raise FileNotFoundError(f"no image files in {', '.join(map(str, inputs))}{hint}")
    seen: dict[str, Path] = {}
    for path in files:
        if path.stem in seen:
            # Their masks would both be written to <stem>_mask.png.
            raise ValueError(f"inputs {seen[path.stem]} and {path} share the name {path.stem!r}")
        seen[path.stem] = path
    return files


def find_image_file(folder: Path, stems: Sequence[str]) -> Path | None:
    """The first image file in ``folder`` named one of ``stems`` (any image suffix), or None."""
    for stem in stems:
        for path in sorted(folder.glob(f"{glob.escape(stem)}.*")):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                return path
    return None
