"""NIfTI volumes and DICOM series built from the real LGG slices, for the volume tests.

The LGG release stores each patient as 2-D slices, ``<patient>_<k>.tif`` (RGB: pre-contrast,
FLAIR, post-contrast) with ``<patient>_<k>_mask.tif``. Stacked in slice-number order (natural
sort: 2 before 10) the FLAIR channels make a volume and the masks its label volume.

The release records no voxel spacing. The spacing here, 1 x 1 x 3 mm (times the in-plane step
when a volume is thinned), is *stated*, not recorded: it makes the geometry definite, not true.

Geometry: a TIFF slice is taken as a viewer shows an axial slice, the patient's anterior at the
top and the patient's right on the left. Voxel ``(i, j, k)`` of the volume is pixel
``(H-1-j, W-1-i)`` of slice ``k``, so the volume is in RAS+ order (i grows towards the patient's
right, j towards anterior, k towards superior) and its affine is the diagonal of the spacing,
centred on the world origin. The DICOM series are written from the same
slices with the geometry worked out here from first principles (DICOM's patient axes are LPS),
not with segkit's reader, so reading them back tests the reader.

`build_layout` writes several patients in the volume layout (``imagesTr/``, ``labelsTr/``), of
one modality (FLAIR) or several (e.g. FLAIR and post-contrast as ``<patient>_0000.nii.gz`` and
``<patient>_0001.nii.gz``) taken from the TIFFs' channels.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import tifffile
from natsort import natsorted
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

#: The FLAIR channel of an LGG TIFF (channels: pre-contrast, FLAIR, post-contrast).
FLAIR = 1
#: The LGG TIFF channels by name.
CHANNELS = {"pre-contrast": 0, "flair": FLAIR, "post-contrast": 2}
#: Stated voxel size in mm: in-plane x, in-plane y, between slices.
STATED_SPACING = (1.0, 1.0, 3.0)
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


@dataclass(frozen=True)
class PatientVolume:
    """One patient's slices and the files written from them.

    Attributes:
        patient: the LGG folder name.
        numbers: the slice numbers ``k`` used, in order (inferior to superior).
        flair: ``uint8 (K, H, W)``, the FLAIR slices as the TIFFs show them.
        mask: ``uint8 (K, H, W)`` in {0, 1}, the true masks likewise.
        affine: the 4x4 voxel-to-RAS affine of the NIfTI files.
        image: the image NIfTI, ``(W, H, K)`` uint8.
        labels: the label NIfTI, same shape and affine, uint8.
        dicom: a folder holding the image as a DICOM series, one file per slice, file names
            shuffled so that their order is not the slices' order.
    """

    patient: str
    numbers: tuple[int, ...]
    flair: np.ndarray
    mask: np.ndarray
    affine: np.ndarray
    image: Path
    labels: Path
    dicom: Path


def read_slices(
    patient_dir: Path, numbers: range | None = None, step: int = 1, channels=(FLAIR,)
) -> tuple[list[int], np.ndarray, np.ndarray]:
    """The FLAIR slices (or other channels) and masks of one patient, in slice-number order.

    Args:
        patient_dir: ``kaggle_3m/<patient>``.
        numbers: the slice numbers to keep (all when None).
        step: keep every ``step``-th pixel in-plane (4 turns 256x256 into 64x64).
        channels: the TIFF channels to read; one gives ``(K, H, W)`` slices, several
            ``(K, H, W, C)``.

    Returns:
        ``(numbers, images, mask)``: the numbers kept, ``uint8`` slices and ``uint8 (K, H, W)``
        masks in {0, 1}.
    """
    files = natsorted(p for p in patient_dir.glob("*.tif") if not p.stem.endswith("_mask"))
    kept = [(int(p.stem.rsplit("_", 1)[1]), p) for p in files]
    kept = [(n, p) for n, p in kept if numbers is None or n in numbers]
    images = np.stack([tifffile.imread(p)[::step, ::step, list(channels)] for _, p in kept])
    mask = np.stack(
        [tifffile.imread(p.with_name(f"{p.stem}_mask.tif"))[::step, ::step] > 0 for _, p in kept]
    )
    images = images[..., 0] if len(channels) == 1 else images
    return [n for n, _ in kept], images, mask.astype(np.uint8)


def to_volume(slices: np.ndarray) -> np.ndarray:
    """``(K, H, W)`` slices as a viewer shows them -> the ``(W, H, K)`` RAS+ voxel array."""
    return np.ascontiguousarray(slices.transpose(2, 1, 0)[::-1, ::-1, :])


def centred_affine(shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> np.ndarray:
    """A diagonal voxel-to-RAS affine with the volume's centre at the world origin."""
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -(np.asarray(shape) - 1) / 2 * np.asarray(spacing)
    return affine


def write_nifti(path: Path, array: np.ndarray, affine: np.ndarray) -> Path:
    """Write ``array`` as NIfTI-1 with ``affine`` as both its qform and sform (scanner)."""
    image = nib.Nifti1Image(array, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    nib.save(image, path)
    return path


def write_dicom_series(
    folder: Path,
    slices: np.ndarray,
    affine: np.ndarray,
    *,
    series_uid: str | None = None,
    seed: int = 0,
) -> Path:
    """Write ``(K, H, W)`` slices (as a viewer shows them) as an axial MR DICOM series.

    ``affine`` is the RAS affine of `to_volume`'s array for these slices. Pixel ``(r, c)`` of
    slice ``k`` is voxel ``(W-1-c, H-1-r, k)``: rows run towards the patient's posterior and
    columns towards the patient's left, which in DICOM's LPS axes are the cosines (0, 1, 0) and
    (1, 0, 0). File names and instance numbers are shuffled; only the positions give the order.
    """
    folder.mkdir(parents=True, exist_ok=True)
    count, height, width = slices.shape
    spacing = np.abs(np.diag(affine)[:3])
    series_uid = series_uid or generate_uid()
    study_uid, frame_uid = generate_uid(), generate_uid()
    order = list(range(count))
    random.Random(seed).shuffle(order)
    lps = np.diag([-1.0, -1.0, 1.0])
    for k in range(count):
        corner_ras = affine @ np.array([width - 1, height - 1, k, 1.0])
        dataset = _mr_slice(slices[k], study_uid, series_uid, frame_uid)
        dataset.ImagePositionPatient = [float(v) for v in lps @ corner_ras[:3]]
        dataset.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        dataset.PixelSpacing = [float(spacing[1]), float(spacing[0])]  # rows, columns
        dataset.SliceThickness = float(spacing[2])
        dataset.InstanceNumber = order[k] + 1
        dataset.save_as(folder / f"IM{order[k] + 1:05d}.dcm", enforce_file_format=True)
    return folder


def _mr_slice(pixels: np.ndarray, study_uid: str, series_uid: str, frame_uid: str):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = pydicom.Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = MR_IMAGE_STORAGE
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study_uid, series_uid
    dataset.FrameOfReferenceUID = frame_uid
    dataset.Modality = "MR"
    dataset.PatientName = "LGG^Test"
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 16, 16, 15
    dataset.PixelRepresentation = 0
    dataset.PixelData = pixels.astype("<u2").tobytes()
    return dataset


def write_text_report(path: Path, series_uid: str) -> Path:
    """A DICOM file without pixels (a Basic Text SR) in the given series."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = BASIC_TEXT_SR
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = pydicom.Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = BASIC_TEXT_SR
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.SeriesInstanceUID = series_uid
    dataset.Modality = "SR"
    dataset.save_as(path, enforce_file_format=True)
    return path


def reoriented(array: np.ndarray, affine: np.ndarray, permutation, flips):
    """The same scan stored another way: axes permuted, then some flipped, affine to match.

    New voxel axis ``a`` is old axis ``permutation[a]``; flipping axis ``a`` reads it from the
    far end, so its affine column turns round and the origin moves to that end.
    """
    array = array.transpose(permutation)
    affine = affine[:, [*permutation, 3]].copy()
    for axis in flips:
        array = np.flip(array, axis)
        affine[:3, 3] += affine[:3, axis] * (array.shape[axis] - 1)
        affine[:3, axis] *= -1
    return np.ascontiguousarray(array), affine


def build_patient(
    lgg_root: Path, patient: str, out: Path, numbers: range | None = None, step: int = 1
) -> PatientVolume:
    """Write one patient's image and label NIfTI files and DICOM series under ``out``."""
    kept, flair, mask = read_slices(lgg_root / patient, numbers, step)
    spacing = (STATED_SPACING[0] * step, STATED_SPACING[1] * step, STATED_SPACING[2])
    volume = to_volume(flair)
    affine = centred_affine(volume.shape, spacing)
    out.mkdir(parents=True, exist_ok=True)
    return PatientVolume(
        patient=patient,
        numbers=tuple(kept),
        flair=flair,
        mask=mask,
        affine=affine,
        image=write_nifti(out / f"{patient}.nii.gz", volume, affine),
        labels=write_nifti(out / f"{patient}_labels.nii.gz", to_volume(mask), affine),
        dicom=write_dicom_series(out / f"{patient}_dicom", flair, affine),
    )


@dataclass(frozen=True)
class LayoutCase:
    """One patient written into the volume layout by `build_layout`.

    Attributes:
        patient: the LGG folder name, and the case's name.
        numbers: the slice numbers used, inferior to superior.
        images: ``uint8 (K, H, W, C)``: the slices of each modality, as the TIFFs show them.
        mask: ``uint8 (K, H, W)`` in {0, 1}.
        image_files: the image NIfTI files, one per modality.
        labels: the label NIfTI file.
    """

    patient: str
    numbers: tuple[int, ...]
    images: np.ndarray
    mask: np.ndarray
    image_files: tuple[Path, ...]
    labels: Path


def build_layout(
    lgg_root: Path,
    patients,
    out: Path,
    *,
    modalities=("flair",),
    numbers: range | None = None,
    step: int = 1,
) -> dict[str, LayoutCase]:
    """Write LGG patients as NIfTI volumes in ``out/imagesTr`` and ``out/labelsTr``.

    Args:
        lgg_root: ``kaggle_3m``.
        patients: the patient folders to write, one case each.
        out: the layout's root.
        modalities: TIFF channels by name (`CHANNELS`): one gives ``<patient>.nii.gz``, several
            give ``<patient>_0000.nii.gz``, ``<patient>_0001.nii.gz``, ... in this order.
        numbers: the slice numbers to keep (all when None).
        step: keep every ``step``-th pixel in-plane.

    Returns:
        The cases by patient.
    """
    images_dir, labels_dir = out / "imagesTr", out / "labelsTr"
    images_dir.mkdir(parents=True, exist_ok=True)
    labels_dir.mkdir(parents=True, exist_ok=True)
    channels = [CHANNELS[m] for m in modalities]
    spacing = (STATED_SPACING[0] * step, STATED_SPACING[1] * step, STATED_SPACING[2])
    cases = {}
    for patient in patients:
        kept, images, mask = read_slices(lgg_root / patient, numbers, step, channels)
        images = images[..., None] if images.ndim == 3 else images
        affine = centred_affine(to_volume(mask).shape, spacing)
        if len(channels) == 1:
            names = [f"{patient}.nii.gz"]
        else:
            names = [f"{patient}_{c:04d}.nii.gz" for c in range(len(channels))]
        files = tuple(
            write_nifti(images_dir / name, to_volume(images[..., c]), affine)
            for c, name in enumerate(names)
        )
        labels = write_nifti(labels_dir / f"{patient}.nii.gz", to_volume(mask), affine)
        cases[patient] = LayoutCase(patient, tuple(kept), images, mask, files, labels)
    return cases
