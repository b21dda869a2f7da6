"""Reading 3-D scans (NIfTI files, DICOM series) and cutting them into the 2-D slices models see.

```python
from segkit.data import volumes

scan = volumes.read_volume("case_001.nii.gz")         # or a folder holding a DICOM series
scan.shape, scan.spacing, scan.axial_axis             # (240, 240, 155), (1.0, 1.0, 1.0), 2
labels = volumes.read_labels("labels/case_001.nii.gz", scan)   # checked against the scan

slicing = volumes.slicing(scan)                      # along the axial axis
images, windows = volumes.map_to_uint8(scan.array)   # each modality by its own window
slices = slicing.slices(images)                      # (155, 240, 240), as a viewer shows them
assert (slicing.assemble(slices) == images).all()    # and back to the file's voxel order
volumes.write_labels("case_001_mask.nii.gz", labels.array, scan)

# Several modalities of one case (nnU-Net's case_0000, case_0001, ...) as channels.
case = volumes.stack_modalities([volumes.read_volume(f"case_002_{m:04d}.nii.gz") for m in (0, 1)])
case.shape, case.channels                             # (240, 240, 155), 2
```

NIfTI is read by nibabel and DICOM by pydicom: ``pip install 'segkit[volumes]'``.

**Where voxels lie.** A `Volume`'s ``affine`` maps a voxel index ``(i, j, k, 1)`` to world
millimetres in RAS+ axes (growing towards the patient's right, anterior and superior), as
nibabel gives it for NIfTI; a DICOM series' LPS geometry is turned into the same.

**Slices.** `slicing` takes 2-D slices along one voxel axis: by default the *axial* axis, the one
most aligned with the world's superior direction (nibabel's ``io_orientation``), whatever the
array's axis order. Each slice is laid out as a viewer shows it (and as 2-D training images
are): axial and coronal slices with the patient's right on the left (axial: anterior at the top;
coronal: superior at the top), sagittal slices with superior at the top and anterior on the left.
So a scan stored with flipped or permuted axes (the affine saying so) gives the same slices, and
masks put back with `Slicing.assemble` lie in the same place in the world.

**Intensities.** segkit's 2-D models read 8-bit images; scanners store 12 to 16 bits with no
fixed scale. `to_uint8` maps each volume on its own: values at or below the 0.5th percentile of
the volume's voxels become 0, at or above the 99.5th become 255, linear between
(`percentile_window`), then the model's own normalisation follows as for any image. A case
of several modalities maps each one by its own window (`map_to_uint8`).

**DICOM series.** One folder, one series, one slice per file: the slices are ordered by their
position along the slice normal (``ImagePositionPatient`` against the normal of
``ImageOrientationPatient``), not by file name or instance number. Missing or duplicate
positions, several series, a file without an image and a file that is not DICOM are each an
error naming the files.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segkit._io import atomic_path
from segkit.data.errors import DataError
from segkit.data.imagefiles import IMAGE_SUFFIXES

__all__ = [
    "AFFINE_TOLERANCE",
    "PERCENTILES",
    "Slicing",
    "Volume",
    "axial_axis",
    "check_aligned",
    "is_dicom_folder",
    "is_nifti",
    "is_volume",
    "is_volume_input",
    "map_to_uint8",
    "misalignment",
    "nifti_files",
    "percentile_window",
    "read_geometry",
    "read_labels",
    "read_volume",
    "slicing",
    "stack_modalities",
    "to_uint8",
    "volume_name",
    "write_labels",
]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
#: The percentiles of a volume's voxels that `to_uint8` maps to 0 and 255.
PERCENTILES = (0.5, 99.5)
#: How far (mm) the affine of a label volume may differ from its image's, entry by entry:
#: NIfTI stores geometry in float32, so files written by different tools differ slightly.
AFFINE_TOLERANCE = 1e-3
#: Relative error allowed between the steps of a DICOM series' slice positions.
STEP_TOLERANCE = 0.01
_DICOM_MAGIC_OFFSET = 128


def _nibabel(doing: str = "reading NIfTI"):
    try:
        import nibabel
    except ImportError:
        raise ImportError(f"{doing} needs nibabel: pip install 'segkit[volumes]'") from None
    return nibabel


def _pydicom():
    try:
        import pydicom
    except ImportError:
        raise ImportError("reading DICOM needs pydicom: pip install 'segkit[volumes]'") from None
    return pydicom


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3-D scan: its voxels, where they lie in the patient, and where it came from.

    Attributes:
        array: the voxels, ``(X, Y, Z)`` in the file's own axis order (a DICOM series:
            columns, rows, slices), with the file's intensity scaling applied; ``(X, Y, Z, C)``
            for a case of several modalities (`stack_modalities`), one channel each.
        affine: ``(4, 4)`` float: voxel index ``(i, j, k, 1)`` to RAS world millimetres.
        source: the NIfTI file or DICOM folder it was read from.
        header: the NIfTI file's header, kept so that masks written for it (`write_labels`)
            carry its geometry fields; None for a DICOM series.
    """

    array: np.ndarray
    affine: np.ndarray
    source: Path
    header: object = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """The voxel grid's shape (without the channels of several modalities)."""
        return self.array.shape[:3]

    @property
    def channels(self) -> int:
        """How many modalities the volume holds: 1, or the channels `stack_modalities` made."""
        return self.array.shape[3] if self.array.ndim == 4 else 1

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along each voxel axis, from the affine."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def axial_axis(self) -> int:
        """The voxel axis most aligned with the world's superior direction."""
        return axial_axis(self.affine)


def is_nifti(path: str | Path) -> bool:
    """Whether a file name ends in ``.nii`` or ``.nii.gz``."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def is_dicom_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding DICOM files (``.dcm`` or DICOM's ``DICM`` mark)."""
    path = Path(path)
    if not path.is_dir():
        return False
    for file in path.iterdir():
        if file.name.startswith(".") or not file.is_file():
            continue
        if file.suffix.lower() == ".dcm":
            return True
        if file.suffix.lower() in IMAGE_SUFFIXES:
            continue
        with file.open("rb") as f:
            f.seek(_DICOM_MAGIC_OFFSET)
            if f.read(4) == b"DICM":
                return True
    return False


def is_volume(path: str | Path) -> bool:
    """Whether ``path`` names a volume: a NIfTI file or a DICOM series folder."""
    return (is_nifti(path) and not Path(path).is_dir()) or is_dicom_folder(path)


def nifti_files(folder: str | Path) -> list[Path]:
    """The NIfTI files in ``folder`` (not below it), hidden files left out."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir() if p.is_file() and is_nifti(p) and not p.name.startswith(".")
    )


def is_volume_input(path: str | Path) -> bool:
    """Whether ``path`` is something to segment as volumes: a NIfTI file, a DICOM series
    folder, or a folder of NIfTI files (such as ``imagesTs/``)."""
    return is_volume(path) or bool(nifti_files(path))


def volume_name(path: str | Path) -> str:
    """A volume's name for output files: the file name less ``.nii(.gz)``, or the folder name."""
    path = Path(path)
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_volume(path: str | Path) -> Volume:
    """Read a NIfTI file (``.nii``, ``.nii.gz``) or a folder holding one DICOM series.

    A NIfTI file must hold one 3-D volume; a 4-D file whose extra axes have length 1 (as some
    converters write) is read as 3-D.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DataError: a file that cannot be read (truncated, not NIfTI), a 4-D series or a 2-D
            image, a degenerate affine, or a bad DICOM series (see the module doc); the message
            names the file(s).
        ImportError: nibabel (or, for DICOM, pydicom) is not installed.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_dir():
        return _read_dicom_series(path)
    if is_nifti(path):
        return _read_nifti(path)
    if path.suffix.lower() == ".dcm":
        raise DataError(f"{path} is one DICOM file: give the folder holding its series", path)
    raise DataError(
        f"{path} is neither a NIfTI file (.nii, .nii.gz) nor a DICOM series folder", path
    )


def _read_nifti(path: Path) -> Volume:
    image = _load_nifti(path)
    try:
        array = np.asanyarray(image.dataobj)
    except _NIFTI_ERRORS as exc:
        _unreadable(path, exc)
    array = _as_3d(array, path)
    affine = np.asarray(image.affine, dtype=float)
    _check_affine(affine, path)
    return Volume(np.asarray(array), affine, path, image.header.copy())


# What nibabel and gzip raise on a file that is cut short or not NIfTI.
_NIFTI_ERRORS = (OSError, EOFError, ValueError, zlib.error)


def _load_nifti(path: Path):
    """nibabel's image of ``path``: the header is read, the voxels when asked for."""
    nib = _nibabel()
    try:
        return nib.load(path)
    except (*_NIFTI_ERRORS, nib.filebasedimages.ImageFileError) as exc:
        _unreadable(path, exc)


def _unreadable(path: Path, exc: Exception):
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    raise DataError(f"cannot read {path}: truncated or not NIfTI ({reason})", path) from None


def read_geometry(path: str | Path) -> tuple[tuple[int, int, int], np.ndarray]:
    """A NIfTI file's voxel shape and affine, read from its header alone (no voxels).

    Raises:
        DataError: as `read_volume` for a file that cannot be read, is not 3-D or has a
            degenerate affine.
    """
    path = Path(path)
    image = _load_nifti(path)
    shape = tuple(int(size) for size in image.shape)
    if len(shape) > 3 and all(size == 1 for size in shape[3:]):
        shape = shape[:3]
    if len(shape) != 3:
        raise DataError(f"{path} is {len(shape)}-D (shape {shape}); expected one 3-D volume", path)
    affine = np.asarray(image.affine, dtype=float)
    _check_affine(affine, path)
    return shape, affine


def _as_3d(array: np.ndarray, path: Path) -> np.ndarray:
    if array.ndim > 3 and all(size == 1 for size in array.shape[3:]):
        array = array.reshape(array.shape[:3])
    if array.ndim != 3:
        raise DataError(
            f"{path} is {array.ndim}-D (shape {array.shape}); expected one 3-D volume", path
        )
    return array


def _check_affine(affine: np.ndarray, source: Path) -> None:
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise DataError(f"{source} has a degenerate affine, so its voxels lie nowhere", source)


def read_labels(
    path: str | Path, image: Volume | None = None, *, tolerance: float = AFFINE_TOLERANCE
) -> Volume:
    """Read a label volume (class index per voxel) as ``uint8``, checked against its image.

    Args:
        path: a NIfTI file or DICOM series folder.
        image: the volume the labels belong to; when given, shape and affine must match.
        tolerance: largest difference allowed between the two affines' entries (mm).

    Raises:
        DataError: as `read_volume`; values that are not integers 0..255; a shape or affine
            that differs from ``image``'s.
    """
    labels = read_volume(path)
    values = labels.array
    if not np.issubdtype(values.dtype, np.integer):
        fraction = values[values != np.round(values)]
        if fraction.size:
            raise DataError(
                f"label volume {labels.source} holds non-integer values (e.g. {fraction.flat[0]})",
                labels.source,
            )
    if values.size and (values.min() < 0 or values.max() > 255):
        raise DataError(
            f"label volume {labels.source} holds values from {values.min()} to {values.max()}; "
            "labels are 0..255",
            labels.source,
        )
    labels = Volume(values.astype(np.uint8), labels.affine, labels.source, labels.header)
    if image is not None:
        check_aligned(labels, image, tolerance)
    return labels


def check_aligned(
    labels: Volume, image: Volume, tolerance: float = AFFINE_TOLERANCE, what: str = "label volume"
) -> None:
    """Fail unless ``labels`` has ``image``'s shape and, within ``tolerance`` mm, its affine.

    Args:
        labels: the volume checked (a label volume, or another modality of a case).
        image: the volume it must fit.
        tolerance: largest difference allowed between the affines' entries (mm).
        what: what ``labels`` is, for the message.

    Raises:
        DataError: naming both sources.
    """
    problem = misalignment(
        labels.shape, labels.affine, image.shape, image.affine, image.source, tolerance
    )
    if problem:
        raise DataError(f"{what} {labels.source} {problem}", labels.source)


def misalignment(
    shape, affine, image_shape, image_affine, image: str | Path, tolerance: float = AFFINE_TOLERANCE
) -> str | None:
    """How a volume of ``shape`` and ``affine`` fails to fit the image ``image``, in words, or
    None when it fits (the same shape, and affines within ``tolerance`` mm entry by entry)."""
    if tuple(shape) != tuple(image_shape):
        return f"has shape {tuple(shape)}, but its image {image} has {tuple(image_shape)}"
    difference = float(np.abs(np.asarray(affine) - np.asarray(image_affine)).max())
    if difference > tolerance:
        return (
            f"lies elsewhere than its image {image}: their affines differ by up to "
            f"{difference:.3g} mm (tolerance {tolerance} mm)"
        )
    return None


def stack_modalities(modalities: list[Volume], tolerance: float = AFFINE_TOLERANCE) -> Volume:
    """Several modalities of one case (same voxels, same place) as one volume of channels.

    Returns:
        A `Volume` whose ``array`` is ``(X, Y, Z, C)``, channel ``c`` being ``modalities[c]``,
        with the first one's affine, header and source. One modality is returned as it is.

    Raises:
        DataError: a modality whose shape or affine differs from the first's, naming both.
    """
    if not modalities:
        raise ValueError("stack_modalities needs at least one volume")
    first = modalities[0]
    if len(modalities) == 1:
        return first
    for other in modalities[1:]:
        check_aligned(other, first, tolerance, what="modality")
    array = np.stack([np.asarray(m.array, dtype=np.float32) for m in modalities], axis=-1)
    return Volume(array, first.affine, first.source, first.header)


def axial_axis(affine: np.ndarray) -> int:
    """The voxel axis most aligned with world superior-inferior (nibabel's ``io_orientation``)."""
    orientation = _nibabel("slicing volumes").orientations.io_orientation(affine)
    return int(np.flatnonzero(orientation[:, 0] == 2)[0])


@dataclass(frozen=True)
class Slicing:
    """How a volume's voxels become 2-D slices as a viewer shows them, and back.

    Made by `slicing`. `slices` and `assemble` work on any array of the volume's shape (the
    image, its labels, a predicted mask), with extra trailing axes (channels) carried along.

    Attributes:
        shape: the volume's voxel shape.
        axis: the voxel axis the slices are taken along.
        orientation: nibabel's ``io_orientation`` of the affine: for each voxel axis, the RAS
            axis it runs along and whether it runs backwards (-1).
    """

    shape: tuple[int, int, int]
    axis: int
    orientation: np.ndarray

    @property
    def _ras_axis(self) -> int:
        return int(self.orientation[self.axis, 0])

    def slices(self, array: np.ndarray) -> np.ndarray:
        """``(N, H, W, ...)``: the volume's slices along `axis`, from the world's inferior
        (posterior, right) end, each laid out as a viewer shows it."""
        nib = _nibabel("slicing volumes")
        array = np.asarray(array)
        if array.shape[:3] != self.shape:
            raise ValueError(f"array shape {array.shape} is not the volume's {self.shape}")
        ras = nib.orientations.apply_orientation(array, self.orientation)
        stack = np.moveaxis(ras, self._ras_axis, 0)
        # Rows run along the later world axis, columns along the earlier, both backwards:
        # axial slices then show anterior at the top and the patient's right on the left.
        return np.ascontiguousarray(stack[:, ::-1, ::-1].swapaxes(1, 2))

    def assemble(self, slices: np.ndarray) -> np.ndarray:
        """The inverse of `slices`: a stack of slices back in the file's voxel order."""
        nib = _nibabel("slicing volumes")
        stack = np.asarray(slices).swapaxes(1, 2)[:, ::-1, ::-1]
        ras = np.moveaxis(stack, 0, self._ras_axis)
        to_file = nib.orientations.ornt_transform(
            nib.orientations.axcodes2ornt(("R", "A", "S")), self.orientation
        )
        array = np.ascontiguousarray(nib.orientations.apply_orientation(ras, to_file))
        if array.shape[:3] != self.shape:
            raise ValueError(f"slices of shape {slices.shape} do not make the volume {self.shape}")
        return array

    @property
    def indices(self) -> np.ndarray:
        """For each slice of `slices`, its index along `axis` in the file's voxel order."""
        count = self.shape[self.axis]
        forwards = self.orientation[self.axis, 1] > 0
        return np.arange(count) if forwards else np.arange(count)[::-1]


def slicing(volume: Volume, axis: int | None = None) -> Slicing:
    """How to cut ``volume`` into 2-D slices along ``axis`` (default: its axial axis).

    Raises:
        ValueError: ``axis`` is not 0, 1 or 2.
    """
    if axis is None:
        axis = volume.axial_axis
    elif axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2 (a voxel axis of {volume.source}), got {axis}")
    orientation = _nibabel("slicing volumes").orientations.io_orientation(volume.affine)
    return Slicing(tuple(volume.shape), int(axis), orientation)


def percentile_window(
    array: np.ndarray, percentiles: tuple[float, float] = PERCENTILES
) -> tuple[float, float]:
    """The values at two percentiles of a volume's voxels (NaN voxels ignored)."""
    low, high = np.nanpercentile(np.asarray(array, dtype=np.float64), percentiles)
    return float(low), float(high)


def map_to_uint8(array: np.ndarray) -> tuple[np.ndarray, tuple[tuple[float, float], ...]]:
    """A volume's voxels mapped to 0..255, each channel (modality) by its own percentile window.

    Args:
        array: ``(X, Y, Z)``, or ``(X, Y, Z, C)`` for several modalities.

    Returns:
        ``(uint8 array of the same shape, one (low, high) window per channel)``.
    """
    array = np.asarray(array)
    channels = array[..., None] if array.ndim == 3 else array
    windows = tuple(percentile_window(channels[..., c]) for c in range(channels.shape[-1]))
    mapped = np.stack([to_uint8(channels[..., c], w) for c, w in enumerate(windows)], axis=-1)
    return (mapped[..., 0] if array.ndim == 3 else mapped), windows


def to_uint8(array: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Map values in ``window = (low, high)`` linearly to 0..255, clipping those outside.

    A window of one value (a constant volume) maps everything to 0; NaN maps to 0.
    """
    low, high = window
    values = np.asarray(array, dtype=np.float64)
    if high <= low:
        return np.zeros(values.shape, np.uint8)
    scaled = np.clip((values - low) / (high - low), 0.0, 1.0) * 255.0
    return np.rint(np.nan_to_num(scaled)).astype(np.uint8)


def write_labels(path: str | Path, labels: np.ndarray, like: Volume, description: str = "") -> Path:
    """Write a ``uint8`` label volume as NIfTI (``.nii.gz`` compressed), aligned with ``like``.

    The file has ``like``'s shape and affine; for a NIfTI source also the rest of its header
    geometry (qform and sform codes, units), with the intensity scaling reset and the intent set
    to labels. ``description`` (up to 79 characters) goes into the header's ``descrip``.

    Raises:
        ValueError: ``labels`` is not of ``like``'s shape or holds values outside 0..255.
    """
    nib = _nibabel("writing NIfTI")
    path = Path(path)
    labels = np.asarray(labels)
    if labels.shape != like.shape:
        raise ValueError(f"labels of shape {labels.shape} do not fit {like.source} {like.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError(f"labels must be 0..255, got {labels.min()}..{labels.max()}")
    labels = labels.astype(np.uint8)
    header = like.header.copy() if like.header is not None else None
    kind = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
    image = kind(labels, like.affine, header)
    if header is None:  # from DICOM: the scanner's coordinates, in mm
        image.set_qform(like.affine, code=1)
        image.set_sform(like.affine, code=1)
        image.header.set_xyzt_units("mm")
    image.set_data_dtype(np.uint8)
    image.header.set_slope_inter(1.0, 0.0)
    image.header.set_intent("label")
    image.header["cal_min"], image.header["cal_max"] = 0, int(labels.max(initial=0))
    image.header["descrip"] = description[:79].encode("ascii", "replace")
    data = image.to_bytes()
    if path.name.lower().endswith(".gz"):
        data = gzip.compress(data, compresslevel=6)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def _read_dicom_series(folder: Path) -> Volume:
    pydicom = _pydicom()
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise DataError(f"{folder} holds no files; expected the files of a DICOM series", folder)
    slices = [_read_dicom_slice(pydicom, file, folder) for file in files]
    _check_one_series(slices, folder)
    first_file, first = slices[0]
    row, column = _cosines(first, first_file)
    for file, dataset in slices[1:]:
        _check_same("orientation", first_file, file, _cosines(dataset, file), (row, column))
        _check_same("size", first_file, file, _size(dataset), _size(first))
        spacing = _pixel_spacing(dataset, file)
        _check_same("pixel spacing", first_file, file, spacing, _pixel_spacing(first, first_file))
    normal = np.cross(row, column)
    positions = np.array([_position(d, f) @ normal for f, d in slices])
    order = np.argsort(positions, kind="stable")
    slices = [slices[i] for i in order]
    _check_positions(positions[order], [f for f, _ in slices], folder)

    array = np.stack([_pixels(d, f).T for f, d in slices], axis=-1)
    row_spacing, column_spacing = _pixel_spacing(first, first_file)
    start = _position(slices[0][1], slices[0][0])
    if len(slices) > 1:
        step = (_position(slices[-1][1], slices[-1][0]) - start) / (len(slices) - 1)
    else:
        step = normal * float(first.get("SpacingBetweenSlices", first.get("SliceThickness", 1)))
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1] = row * column_spacing, column * row_spacing
    lps[:3, 2], lps[:3, 3] = step, start
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # DICOM's LPS axes to RAS
    _check_affine(affine, folder)
    return Volume(array, affine, folder)


def _read_dicom_slice(pydicom, file: Path, folder: Path):
    try:
        dataset = pydicom.dcmread(file)
    except pydicom.errors.InvalidDicomError:
        raise DataError(
            f"{file} in the DICOM series folder {folder} is not a DICOM file", file
        ) from None
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"cannot read DICOM file {file}: {exc}", file) from None
    if "PixelData" not in dataset:
        kind = getattr(dataset.get("SOPClassUID"), "name", None) or "no image"
        raise DataError(
            f"{file} is a DICOM file without an image ({kind}); a series folder holds only the "
            "series' image files",
            file,
        )
    if int(dataset.get("NumberOfFrames", 1) or 1) > 1:
        raise DataError(
            f"{file} holds {dataset.NumberOfFrames} frames; segkit reads series of one slice "
            "per file",
            file,
        )
    return file, dataset


def _check_one_series(slices: list, folder: Path) -> None:
    first_file, first = slices[0]
    for file, dataset in slices[1:]:
        if dataset.get("SeriesInstanceUID") != first.get("SeriesInstanceUID"):
            raise DataError(
                f"{folder} mixes DICOM series: {first_file.name} is in series "
                f"{first.get('SeriesInstanceUID')}, {file.name} in "
                f"{dataset.get('SeriesInstanceUID')}",
                file,
            )


def _required(dataset, keyword: str, file: Path):
    value = dataset.get(keyword)
    if value is None or value == "":
        raise DataError(f"{file} lacks {keyword}, so its slice cannot be placed", file)
    return value


def _cosines(dataset, file: Path) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray(_required(dataset, "ImageOrientationPatient", file), dtype=float)
    return values[:3], values[3:]


def _position(dataset, file: Path) -> np.ndarray:
    return np.asarray(_required(dataset, "ImagePositionPatient", file), dtype=float)


def _pixel_spacing(dataset, file: Path) -> tuple[float, float]:
    row_spacing, column_spacing = (float(v) for v in _required(dataset, "PixelSpacing", file))
    return row_spacing, column_spacing


def _size(dataset) -> tuple[int, int]:
    return int(dataset.Rows), int(dataset.Columns)


def _check_same(what: str, first_file: Path, file: Path, value, expected) -> None:
    if not np.allclose(np.asarray(value, dtype=float), np.asarray(expected, dtype=float)):
        raise DataError(
            f"{file} and {first_file} differ in {what} ({value} against {expected}); a series "
            "is one stack of parallel slices",
            file,
        )


def _check_positions(positions: np.ndarray, files: list[Path], folder: Path) -> None:
    """Positions along the slice normal, sorted: none twice, none missing."""
    if len(positions) < 2:
        return
    steps = np.diff(positions)
    step = float(np.median(steps))
    duplicates = np.flatnonzero(steps <= STEP_TOLERANCE * max(step, 1e-6))
    if duplicates.size:
        i = duplicates[0]
        raise DataError(
            f"{files[i]} and {files[i + 1]} lie at the same slice position "
            f"({positions[i]:.3f} mm along the slice normal) in {folder}",
            files[i + 1],
        )
    uneven = np.flatnonzero(np.abs(steps - step) > STEP_TOLERANCE * step)
    if uneven.size:
        i = uneven[0]
        missing = "a slice is missing" if steps[i] > 1.5 * step else "the slices are uneven"
        raise DataError(
            f"{missing} between {files[i]} and {files[i + 1]} in {folder}: they lie "
            f"{steps[i]:.3f} mm apart, the other slices {step:.3f} mm",
            files[i + 1],
        )


def _pixels(dataset, file: Path) -> np.ndarray:
    if int(dataset.get("SamplesPerPixel", 1)) != 1:
        raise DataError(f"{file} is a colour image; a scan's slices are greyscale", file)
    try:
        pixels = dataset.pixel_array
    except Exception as exc:  # pydicom raises several kinds for codecs it lacks
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"cannot decode the pixels of {file}: {reason}", file) from None
    slope = float(dataset.get("RescaleSlope", 1) or 1)
    intercept = float(dataset.get("RescaleIntercept", 0) or 0)
    if slope == 1 and intercept == 0:
        return pixels
    return pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept)
