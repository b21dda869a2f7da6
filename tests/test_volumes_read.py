"""segkit.data.volumes on volumes built from the real LGG slices (see lgg_volumes.py)."""

from __future__ import annotations

import gzip
import shutil
import sys

import nibabel as nib
import numpy as np
import pydicom
import pytest
from lgg_volumes import build_patient, reoriented, write_nifti, write_text_report
from pydicom.uid import generate_uid

from segkit.data import DataError, volumes

# Ten slices of one patient, tumour on the last eight, at the release's 256x256.
PATIENT, NUMBERS = "TCGA_CS_4943_20000902", range(10, 20)


@pytest.fixture(scope="session")
def patient(lgg_root, tmp_path_factory):
    return build_patient(lgg_root, PATIENT, tmp_path_factory.mktemp("lgg-volume"), NUMBERS)


def test_nifti_slices_are_the_tiff_slices(patient):
    scan = volumes.read_volume(patient.image)
    assert scan.shape == (256, 256, len(NUMBERS))
    assert scan.spacing == (1.0, 1.0, 3.0)
    assert scan.axial_axis == 2
    np.testing.assert_array_equal(scan.affine, patient.affine)
    slicing = volumes.slicing(scan)
    np.testing.assert_array_equal(slicing.slices(scan.array), patient.flair)
    labels = volumes.read_labels(patient.labels, scan)
    assert labels.array.dtype == np.uint8
    np.testing.assert_array_equal(slicing.slices(labels.array), patient.mask)


@pytest.mark.parametrize(
    ("permutation", "flips", "axial"),
    [
        ((0, 1, 2), (0,), 2),  # LAS, as many NIfTI converters write
        ((0, 1, 2), (2,), 2),  # slices stored top to bottom
        ((2, 0, 1), (), 0),  # slice axis first
        ((1, 2, 0), (0, 2), 1),  # permuted and flipped
    ],
)
def test_any_voxel_order_gives_the_same_slices(patient, tmp_path, permutation, flips, axial):
    array, affine = reoriented(
        nib.load(patient.image).get_fdata(), patient.affine, permutation, flips
    )
    scan = volumes.read_volume(write_nifti(tmp_path / "scan.nii.gz", array, affine))
    assert scan.axial_axis == axial  # from the affine, not the array's last axis
    slicing = volumes.slicing(scan)
    np.testing.assert_array_equal(slicing.slices(scan.array), patient.flair)
    np.testing.assert_array_equal(slicing.assemble(slicing.slices(scan.array)), scan.array)
    # Slice n of the stack is index indices[n] along the axis in the file.
    first = np.take(scan.array, slicing.indices[0], axis=axial)
    assert sorted(first.ravel()) == sorted(patient.flair[0].ravel())


def test_slices_along_other_axes_as_a_viewer_shows_them(patient):
    scan = volumes.read_volume(patient.image)  # RAS: i to the right, j anterior, k superior
    ras = scan.array
    sagittal = volumes.slicing(scan, axis=0).slices(ras)
    assert sagittal.shape == (256, len(NUMBERS), 256)
    # Superior at the top, anterior on the left.
    np.testing.assert_array_equal(sagittal[100], ras[100, ::-1, ::-1].T)
    coronal = volumes.slicing(scan, axis=1).slices(ras)
    # Superior at the top, the patient's right on the left.
    np.testing.assert_array_equal(coronal[100], ras[::-1, 100, ::-1].T)
    for axis in (0, 1, 2):
        slicing = volumes.slicing(scan, axis=axis)
        np.testing.assert_array_equal(slicing.assemble(slicing.slices(ras)), ras)
    with pytest.raises(ValueError, match="axis must be 0, 1 or 2"):
        volumes.slicing(scan, axis=3)


def test_dicom_series_is_ordered_by_position_not_by_name(patient):
    files = sorted(patient.dicom.iterdir())
    heights = [float(pydicom.dcmread(f).ImagePositionPatient[2]) for f in files]
    assert heights != sorted(heights)  # the names alone would give the wrong order
    series = volumes.read_volume(patient.dicom)
    assert series.spacing == (1.0, 1.0, 3.0)
    assert series.header is None
    np.testing.assert_array_equal(volumes.slicing(series).slices(series.array), patient.flair)
    # The series lies where the NIfTI lies: DICOM voxel (column c, row r, k) is NIfTI voxel
    # (W-1-c, H-1-r, k).
    for c, r, k in ((0, 0, 0), (10, 200, 3), (255, 255, 9)):
        np.testing.assert_allclose(
            series.affine @ [c, r, k, 1], patient.affine @ [255 - c, 255 - r, k, 1], atol=1e-9
        )


@pytest.fixture
def series_copy(patient, tmp_path):
    """A copy of the DICOM series, and its files by position (inferior first)."""
    folder = shutil.copytree(patient.dicom, tmp_path / "series")
    files = sorted(
        folder.iterdir(), key=lambda f: float(pydicom.dcmread(f).ImagePositionPatient[2])
    )
    return folder, files


def test_missing_dicom_slice_names_its_neighbours(series_copy):
    folder, files = series_copy
    files[4].unlink()
    with pytest.raises(DataError, match="a slice is missing between") as error:
        volumes.read_volume(folder)
    assert str(files[3]) in str(error.value) and str(files[5]) in str(error.value)
    assert "\n" not in str(error.value)


def test_duplicate_dicom_position_names_both_files(series_copy):
    folder, files = series_copy
    duplicate = pydicom.dcmread(files[2])
    duplicate.SOPInstanceUID = generate_uid()
    duplicate.save_as(folder / "ZZ_copy.dcm")
    with pytest.raises(DataError, match="same slice position") as error:
        volumes.read_volume(folder)
    assert "ZZ_copy.dcm" in str(error.value) and files[2].name in str(error.value)


def test_mixed_series_names_the_odd_file(series_copy):
    folder, files = series_copy
    stray = pydicom.dcmread(files[0])
    stray.SeriesInstanceUID = generate_uid()
    stray.save_as(files[0])
    with pytest.raises(DataError, match="mixes DICOM series") as error:
        volumes.read_volume(folder)
    assert files[0].name in str(error.value)


def test_non_image_dicom_and_non_dicom_files_are_named(series_copy):
    folder, files = series_copy
    uid = str(pydicom.dcmread(files[0]).SeriesInstanceUID)
    report = write_text_report(folder / "report.dcm", uid)
    with pytest.raises(DataError, match="without an image") as error:
        volumes.read_volume(folder)
    assert str(report) in str(error.value)
    report.unlink()
    (folder / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match="is not a DICOM file") as error:
        volumes.read_volume(folder)
    assert "notes.txt" in str(error.value)


def test_four_dimensional_and_two_dimensional_files(patient, tmp_path):
    array = nib.load(patient.image).get_fdata()
    series = write_nifti(tmp_path / "series.nii.gz", np.stack([array, array], -1), patient.affine)
    with pytest.raises(DataError, match=r"series\.nii\.gz is 4-D \(shape \(256, 256, 10, 2\)\)"):
        volumes.read_volume(series)
    one = write_nifti(tmp_path / "one.nii.gz", array[..., None], patient.affine)
    assert volumes.read_volume(one).shape == (256, 256, 10)  # a length-1 4th axis is dropped
    flat = write_nifti(tmp_path / "flat.nii", array[:, :, 0], patient.affine)
    with pytest.raises(DataError, match=r"flat\.nii is 2-D"):
        volumes.read_volume(flat)


@pytest.mark.parametrize("keep", [0.5, 0.02])  # cut in the voxels; cut in the header
def test_truncated_nifti_names_the_file(patient, tmp_path, keep):
    data = patient.image.read_bytes()
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(DataError, match="cannot read .*cut.nii.gz: truncated") as error:
        volumes.read_volume(cut)
    assert "\n" not in str(error.value)


def test_labels_must_fit_their_image(patient, tmp_path):
    scan = volumes.read_volume(patient.image)
    mask = nib.load(patient.labels).get_fdata()
    smaller = write_nifti(tmp_path / "small.nii.gz", mask[:, :, :9], patient.affine)
    with pytest.raises(DataError, match=r"small\.nii\.gz has shape \(256, 256, 9\), but its"):
        volumes.read_labels(smaller, scan)
    moved_affine = patient.affine.copy()
    moved_affine[2, 3] += 1.5  # half a slice up
    moved = write_nifti(tmp_path / "moved.nii.gz", mask, moved_affine)
    with pytest.raises(DataError, match=r"moved\.nii\.gz lies elsewhere than its image"):
        volumes.read_labels(moved, scan)
    close_affine = patient.affine.copy()
    close_affine[:3, 3] += 1e-5  # float32 rounding between tools: within the tolerance
    close = write_nifti(tmp_path / "close.nii.gz", mask, close_affine)
    assert volumes.read_labels(close, scan).shape == scan.shape
    halves = write_nifti(tmp_path / "halves.nii.gz", mask * 0.5, patient.affine)
    with pytest.raises(DataError, match="non-integer values"):
        volumes.read_labels(halves)


def test_written_labels_keep_the_geometry(patient, tmp_path):
    scan = volumes.read_volume(patient.image)
    labels = volumes.read_labels(patient.labels, scan).array * 2  # a second class
    path = volumes.write_labels(tmp_path / "out_mask.nii.gz", labels, scan, "made by a test")
    with gzip.open(path) as f:
        assert len(f.read()) > 0  # really compressed
    written = nib.load(path)
    assert written.shape == scan.shape and written.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(written.affine, scan.affine)
    np.testing.assert_array_equal(np.asanyarray(written.dataobj), labels)
    source = nib.load(patient.image).header
    assert written.header.get_qform(coded=True)[1] == source.get_qform(coded=True)[1]
    assert written.header.get_sform(coded=True)[1] == source.get_sform(coded=True)[1]
    assert written.header.get_intent()[0] == "label"
    assert written.header["descrip"].item() == b"made by a test"
    assert written.header["cal_max"] == 2

    series = volumes.read_volume(patient.dicom)
    path = volumes.write_labels(tmp_path / "series_mask.nii.gz", series.array > 100, series)
    written = nib.load(path)
    np.testing.assert_allclose(written.affine, series.affine, atol=1e-5)
    assert written.header.get_sform(coded=True)[1] == 1  # scanner coordinates
    with pytest.raises(ValueError, match="do not fit"):
        volumes.write_labels(tmp_path / "bad.nii.gz", labels[:-1], scan)


def test_percentile_window_maps_to_the_full_8_bit_range():
    rng = np.random.default_rng(0)
    scan = rng.gamma(2.0, 300.0, size=(40, 40, 10))  # a long bright tail, as MRI has
    low, high = volumes.percentile_window(scan)
    assert (low, high) == tuple(np.percentile(scan, volumes.PERCENTILES))
    mapped = volumes.to_uint8(scan, (low, high))
    assert mapped.dtype == np.uint8 and mapped.min() == 0 and mapped.max() == 255
    assert np.mean(mapped == 255) == pytest.approx(0.005, abs=0.001)  # the top 0.5 % clipped
    middle = (scan > low) & (scan < high)
    np.testing.assert_allclose(mapped[middle], (scan[middle] - low) / (high - low) * 255, atol=0.5)
    assert not volumes.to_uint8(np.full((4, 4, 4), 7.0), (7.0, 7.0)).any()


def test_what_counts_as_a_volume(patient, figshare_512):
    assert volumes.is_volume(patient.image) and volumes.is_volume(patient.dicom)
    assert not volumes.is_volume(figshare_512 / "images")
    assert not volumes.is_volume(next((figshare_512 / "images").iterdir()))
    assert volumes.volume_name(patient.image) == PATIENT
    assert volumes.volume_name(patient.dicom) == f"{PATIENT}_dicom"


def test_other_files_and_one_dicom_file_are_refused(patient, figshare_512):
    with pytest.raises(DataError, match="give the folder holding its series"):
        volumes.read_volume(next(patient.dicom.iterdir()))
    with pytest.raises(DataError, match="neither a NIfTI file"):
        volumes.read_volume(next((figshare_512 / "images").iterdir()))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        volumes.read_volume(patient.image.with_name("absent.nii.gz"))


@pytest.mark.parametrize(
    ("module", "message", "read"),
    [
        ("nibabel", "reading NIfTI needs nibabel: pip install 'segkit[volumes]'", "image"),
        ("pydicom", "reading DICOM needs pydicom: pip install 'segkit[volumes]'", "dicom"),
    ],
)
def test_a_missing_extra_says_what_to_install(patient, monkeypatch, module, message, read):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(ImportError) as error:
        volumes.read_volume(getattr(patient, read))
    assert str(error.value) == message
