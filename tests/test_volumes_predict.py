"""segkit.volumes and `segkit predict` on volumes built from the real LGG slices."""

from __future__ import annotations

import json

import imageio.v3 as iio
import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner
from lgg_volumes import build_layout, build_patient, reoriented, write_nifti

import segkit.volumes
from segkit import inference
from segkit.cli import cli
from segkit.data import Preprocessing, volumes
from segkit.inference import Segmenter
from segkit.visualize import PREDICTED_COLOUR

# One patient's 256x256 slices 10-19 (tumour on 12-19), and another's thinned to 64x64.
PATIENT, NUMBERS = "TCGA_CS_4943_20000902", range(10, 20)
SMALL, SMALL_NUMBERS = "TCGA_HT_7692_19960724", range(13, 21)


@pytest.fixture(scope="session")
def patient(lgg_root, tmp_path_factory):
    return build_patient(lgg_root, PATIENT, tmp_path_factory.mktemp("lgg-predict"), NUMBERS)


@pytest.fixture(scope="session")
def small(lgg_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("lgg-small")
    return build_patient(lgg_root, SMALL, out, SMALL_NUMBERS, step=4)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """A small U-Net with seeded random weights, saved as a .keras file: a real network that
    runs in a moment."""
    import keras

    import segkit

    keras.utils.set_random_seed(0)
    network = segkit.models.get("unet", input_shape=(64, 64, 1), base_filters=4, depth=2)
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    network.save(path)
    return str(path)


def lopsided(batch: np.ndarray) -> np.ndarray:
    """A stand-in network: bright pixels, weighted by where they lie in the picture.

    Like a real network, and unlike a threshold, it does not give the mirror image of its
    answer for a mirrored slice, so a slice cut or put back the wrong way round shows.
    """
    height, width = batch.shape[1:3]
    rows = np.linspace(1.0, 0.0, height)[None, :, None, None]
    columns = np.linspace(1.0, 0.0, width)[None, None, :, None]
    return ((batch[..., :1] > 0.3) * (0.2 + 0.4 * rows + 0.4 * columns)).astype(np.float32)


def lopsided_segmenter(size=(64, 64)) -> Segmenter:
    return Segmenter(lopsided, Preprocessing(size=size), "lopsided")


def three_classes(batch: np.ndarray) -> np.ndarray:
    """Background, then two classes: dim and bright pixels."""
    grey = batch[..., 0]
    scores = np.stack([0.25 + 0 * grey, (grey > 0.2) * (grey < 0.5), grey >= 0.5], axis=-1)
    return scores.astype(np.float32)


def read_mask(path) -> np.ndarray:
    return np.asanyarray(nib.load(path).dataobj)


@pytest.mark.parametrize(
    "settings", [{}, {"tta": "flips", "postprocess": "largest"}], ids=["plain", "tta-largest"]
)
def test_volume_masks_are_the_slice_masks_one_by_one(patient, tmp_path, settings):
    """The reference is the 2-D path: the volume's slices written as PNG files and segmented
    by `segkit.inference.predict`, as any image would be, with the same settings."""
    segmenter = lopsided_segmenter()
    [written] = segkit.volumes.predict_volumes(
        segmenter, [patient.image], tmp_path / "volume", **settings
    )
    scan = volumes.read_volume(patient.image)
    slicing = volumes.slicing(scan)
    window = volumes.percentile_window(scan.array)
    pngs = tmp_path / "slices"
    for n, picture in enumerate(slicing.slices(volumes.to_uint8(scan.array, window))):
        inference.write_png(pngs / f"{n}.png", picture)
    inference.predict(segmenter, [pngs], tmp_path / "slices-out", **settings)
    expected = [
        iio.imread(tmp_path / "slices-out" / f"{n}_mask.png") // 255 for n in range(len(NUMBERS))
    ]
    predicted = slicing.slices(read_mask(written))
    assert predicted.any(axis=(1, 2)).all()  # something on every slice
    np.testing.assert_array_equal(predicted, np.stack(expected))


def test_mask_has_the_input_geometry_and_a_record(patient, tmp_path):
    [written] = segkit.volumes.predict_volumes(
        lopsided_segmenter(), [patient.image], tmp_path, overlays=True
    )
    assert written == tmp_path / f"{PATIENT}_mask.nii.gz"
    mask, source = nib.load(written), nib.load(patient.image)
    assert mask.shape == source.shape and mask.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(mask.affine, source.affine)
    assert mask.header.get_sform(coded=True)[1] == source.header.get_sform(coded=True)[1]
    assert set(np.unique(np.asanyarray(mask.dataobj))) == {0, 1}
    record = json.loads((tmp_path / f"{PATIENT}_mask.json").read_text())
    scan = volumes.read_volume(patient.image)
    assert record["axis"] == 2 and record["slices"] == len(NUMBERS)
    assert record["settings"] == {"threshold": 0.5, "tta": "none", "postprocess": "none"}
    assert record["intensity"]["percentiles"] == [0.5, 99.5]
    assert record["intensity"]["windows"] == [list(volumes.percentile_window(scan.array))]
    assert record["spacing_mm"] == [1.0, 1.0, 3.0]
    assert b"p0.5-p99.5" in mask.header["descrip"].item()
    montage = iio.imread(tmp_path / f"{PATIENT}_montage.png")
    held = record["slices_with_prediction"]
    columns = int(np.ceil(np.sqrt(held)))
    rows = int(np.ceil(held / columns))
    assert montage.shape == (rows * 258 - 2, columns * 258 - 2, 3)
    assert (montage == PREDICTED_COLOUR).all(axis=-1).any()


@pytest.mark.parametrize(
    ("permutation", "flips"),
    [((0, 1, 2), (0,)), ((0, 1, 2), (1, 2)), ((2, 0, 1), ()), ((1, 2, 0), (0, 2))],
)
def test_same_mask_in_world_space_in_any_voxel_order(patient, tmp_path, permutation, flips):
    segmenter = lopsided_segmenter()
    [plain] = segkit.volumes.predict_volumes(segmenter, [patient.image], tmp_path / "plain")
    array, affine = reoriented(
        nib.load(patient.image).get_fdata(), patient.affine, permutation, flips
    )
    other = write_nifti(tmp_path / "other.nii.gz", array, affine)
    [turned] = segkit.volumes.predict_volumes(segmenter, [other], tmp_path / "turned")
    expected, expected_affine = reoriented(read_mask(plain), patient.affine, permutation, flips)
    assert read_mask(plain).any()
    np.testing.assert_array_equal(read_mask(turned), expected)
    np.testing.assert_array_equal(nib.load(turned).affine, expected_affine)


def test_dicom_series_gives_a_nifti_aligned_with_it(patient, tmp_path):
    segmenter = lopsided_segmenter()
    [from_nifti] = segkit.volumes.predict_volumes(segmenter, [patient.image], tmp_path)
    [from_dicom] = segkit.volumes.predict_volumes(segmenter, [patient.dicom], tmp_path)
    assert from_dicom.name == f"{PATIENT}_dicom_mask.nii.gz"
    series = volumes.read_volume(patient.dicom)
    np.testing.assert_allclose(nib.load(from_dicom).affine, series.affine, atol=1e-5)
    # DICOM voxel (column c, row r, k) is NIfTI voxel (W-1-c, H-1-r, k): the same place.
    np.testing.assert_array_equal(read_mask(from_dicom), read_mask(from_nifti)[::-1, ::-1, :])


def test_axis_chooses_the_slices(small):
    scan = volumes.read_volume(small.image)
    segmenter = lopsided_segmenter((32, 32))
    axial = segkit.volumes.segment_volume(segmenter, scan)
    sagittal = segkit.volumes.segment_volume(segmenter, scan, axis=0)
    assert axial.slicing.axis == 2 and sagittal.slicing.axis == 0
    assert axial.masks.shape == (len(SMALL_NUMBERS), 64, 64)
    assert sagittal.masks.shape == (64, len(SMALL_NUMBERS), 64)
    assert sagittal.labels.shape == axial.labels.shape == scan.shape
    # Each sagittal mask is the stand-in network's answer on that sagittal slice.
    window = volumes.percentile_window(scan.array)
    pictures = sagittal.slicing.slices(volumes.to_uint8(scan.array, window))
    one = segmenter.predict([pictures[30][..., None]])[0]
    expected = inference.to_mask(inference.resize_probabilities(one, pictures.shape[1:]), 0.5)
    np.testing.assert_array_equal(sagittal.masks[30], expected)
    np.testing.assert_array_equal(sagittal.slicing.slices(sagittal.labels), sagittal.masks)


def test_multi_class_model_and_channels(small, tmp_path):
    classes = Segmenter(three_classes, Preprocessing(size=(32, 32), channels=3), "classes")
    classes.class_names = ("background", "dim", "bright")
    [written] = segkit.volumes.predict_volumes(classes, [small.image], tmp_path, overlays=True)
    assert set(np.unique(read_mask(written))) == {0, 1, 2}
    record = json.loads((tmp_path / f"{SMALL}_mask.json").read_text())
    assert record["labels"] == {"0": "background", "1": "dim", "2": "bright"}
    assert (tmp_path / f"{SMALL}_montage.png").is_file()
    named = Segmenter(lopsided, Preprocessing(channels=("flair", "post-contrast")), "named")
    with pytest.raises(ValueError, match="named channels .* exist only in LGG data"):
        segkit.volumes.segment_volume(named, volumes.read_volume(small.image))
    two = Segmenter(lopsided, Preprocessing(channels=(0, 1)), "two")
    with pytest.raises(ValueError, match=rf"{SMALL}\.nii\.gz has 1 modality\(ies\); asked for"):
        segkit.volumes.segment_volume(two, volumes.read_volume(small.image))
    with pytest.raises(ValueError, match="threshold must be between 0 and 1"):
        segkit.volumes.segment_volume(classes, volumes.read_volume(small.image), threshold=2)


def test_no_montage_without_a_prediction(small, tmp_path):
    nothing = Segmenter(lambda b: np.zeros_like(b[..., :1]), Preprocessing(size=(32, 32)), "none")
    segkit.volumes.predict_volumes(nothing, [small.image], tmp_path, overlays=True)
    assert not (tmp_path / f"{SMALL}_montage.png").exists()
    assert json.loads((tmp_path / f"{SMALL}_mask.json").read_text())["slices_with_prediction"] == 0


def test_cli_predicts_volumes_as_the_slices_one_by_one(small, tiny_model, tmp_path):
    """`segkit predict` with a Keras model on a NIfTI file and on a DICOM series, against
    `segkit predict` on the volume's slices as PNG files."""
    runner = CliRunner()
    model = ["--model", tiny_model, "--quiet"]
    for source in (small.image, small.dicom):
        result = runner.invoke(cli, ["predict", str(source), "--out", str(tmp_path / "v"), *model])
        assert result.exit_code == 0, result.output
        assert "1 volume mask written" in result.output
    scan = volumes.read_volume(small.image)
    slicing = volumes.slicing(scan)
    pictures = slicing.slices(volumes.to_uint8(scan.array, volumes.percentile_window(scan.array)))
    for n, picture in enumerate(pictures):
        inference.write_png(tmp_path / "png" / f"{n}.png", picture)
    result = runner.invoke(
        cli, ["predict", str(tmp_path / "png"), "--out", str(tmp_path / "p"), *model]
    )
    assert result.exit_code == 0, result.output
    expected = np.stack(
        [iio.imread(tmp_path / "p" / f"{n}_mask.png") // 255 for n in range(len(pictures))]
    )
    assert 0 < expected.mean() < 1  # the network marks some voxels, not all
    from_nifti = read_mask(tmp_path / "v" / f"{SMALL}_mask.nii.gz")
    np.testing.assert_array_equal(slicing.slices(from_nifti), expected)
    from_dicom = read_mask(tmp_path / "v" / f"{SMALL}_dicom_mask.nii.gz")
    np.testing.assert_array_equal(from_dicom, from_nifti[::-1, ::-1, :])


def test_cli_axis_and_refusals(small, tiny_model, figshare_512, tmp_path):
    runner = CliRunner()
    model = ["--model", tiny_model, "--quiet", "--out", str(tmp_path)]
    chosen = ["--axis", "1", "--tta", "flips", "--postprocess", "largest", "--threshold", "0.4"]
    result = runner.invoke(cli, ["predict", str(small.image), *chosen, *model])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / f"{SMALL}_mask.json").read_text())
    assert record["axis"] == 1
    assert record["settings"] == {"threshold": 0.4, "tta": "flips", "postprocess": "largest"}

    images = str(figshare_512 / "images")
    for arguments, message in [
        ([str(small.image), images], "give volumes or images, not both"),
        ([images, "--axis", "0"], "--axis is for volumes"),
        ([str(small.image), "--probabilities"], "--probabilities is for images"),
    ]:
        result = runner.invoke(cli, ["predict", *arguments, *model])
        assert result.exit_code == 2 and message in result.output, result.output
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(small.image.read_bytes()[:500])
    result = runner.invoke(cli, ["predict", str(cut), *model])
    assert result.exit_code == 2
    assert result.output.strip().startswith(f"segkit: error: cannot read {cut}: truncated")


def test_progress_counts_the_slices(small, capsys):
    scan = volumes.read_volume(small.image)
    segkit.volumes.segment_volume(lopsided_segmenter((32, 32)), scan, batch_size=3, progress=True)
    assert f"predict {SMALL}: {len(SMALL_NUMBERS)}/{len(SMALL_NUMBERS)} slices" in (
        capsys.readouterr().err
    )


def two_channel(batch: np.ndarray) -> np.ndarray:
    """A stand-in network that reads two channels: where the second outshines the first."""
    return (batch[..., 1:2] > batch[..., :1] + 0.1).astype(np.float32)


def test_a_folder_of_cases_with_two_modalities(lgg_root, tmp_path):
    """A folder such as imagesTs/: <case>_0000 and <case>_0001 are one case's two channels,
    each mapped to 8 bits by its own window, and its mask is named after the case."""
    patients = [PATIENT, SMALL]
    cases = build_layout(
        lgg_root, patients, tmp_path / "data", modalities=("flair", "post-contrast"), step=4
    )
    model = Segmenter(two_channel, Preprocessing(size=(64, 64), channels=(0, 1)), "two")
    folder = tmp_path / "data" / "imagesTr"
    written = segkit.volumes.predict_volumes(model, [folder], tmp_path / "out")
    assert written == [tmp_path / "out" / f"{p}_mask.nii.gz" for p in patients]
    for patient, path in zip(patients, written, strict=True):
        case = cases[patient]
        mapped = []
        for c in (0, 1):  # each modality by its own window, computed here with NumPy
            low, high = np.percentile(case.images[..., c].astype(float), (0.5, 99.5))
            mapped.append(np.clip((case.images[..., c] - low) / (high - low), 0, 1) * 255)
        flair, post = (np.rint(m) / np.float32(255) for m in mapped)
        expected = (post > flair + 0.1).astype(np.uint8)
        slicing = volumes.slicing(volumes.read_volume(path))
        np.testing.assert_array_equal(slicing.slices(read_mask(path)), expected)
        record = json.loads((tmp_path / "out" / f"{patient}_mask.json").read_text())
        assert record["modalities"] == [str(f) for f in case.image_files]
        assert len(record["intensity"]["windows"]) == 2
    one = Segmenter(lopsided, Preprocessing(size=(64, 64)), "one")  # reads the first modality
    [first] = segkit.volumes.predict_volumes(one, [folder / f"{SMALL}_0000.nii.gz"], tmp_path)
    [again] = segkit.volumes.predict_volumes(one, [folder], tmp_path / "first")[1:]
    np.testing.assert_array_equal(read_mask(first), read_mask(again))


def test_folder_inputs_are_grouped_by_case(tmp_path):
    names = ["a_0000", "a_0001", "b", "c_0007", "d_0000"]
    for name in names:
        (tmp_path / f"{name}.nii.gz").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a volume")
    found = segkit.volumes.volume_inputs([tmp_path])
    assert {k: [p.name for p in v] for k, v in found.items()} == {
        "a": ["a_0000.nii.gz", "a_0001.nii.gz"],
        "b": ["b.nii.gz"],
        "c_0007": ["c_0007.nii.gz"],  # numbered, but not channels from 0000
        "d": ["d_0000.nii.gz"],
    }
    with pytest.raises(ValueError, match="share the name 'b'"):
        segkit.volumes.volume_inputs([tmp_path, tmp_path / "b.nii.gz"])
    assert volumes.is_volume_input(tmp_path) and not volumes.is_volume_input(tmp_path / "x")


def test_cli_predicts_a_folder_of_volumes(small, tiny_model, tmp_path):
    folder = tmp_path / "imagesTs"
    folder.mkdir()
    (folder / f"{SMALL}.nii.gz").write_bytes(small.image.read_bytes())
    result = CliRunner().invoke(
        cli, ["predict", str(folder), "--model", tiny_model, "--quiet", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert "1 volume mask written" in result.output
    assert (tmp_path / f"{SMALL}_mask.nii.gz").is_file()
