"""`segkit evaluate` on the volume layout: per-slice scores as for images, and each volume
scored whole in 3-D, checked against a computation of its own on the predicted NIfTI files."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner
from lgg_volumes import build_layout, write_nifti
from scipy.spatial.distance import cdist

import segkit.volumes
from segkit import data
from segkit.cli import cli
from segkit.data import DataError, Preprocessing
from segkit.inference import Segmenter
from segkit.reports import evaluate, format_table

NUMBERS = range(10, 18)  # eight slices each, tumour on some


def bright(batch: np.ndarray) -> np.ndarray:
    """A stand-in network: the brightest pixels are tumour (FLAIR shows it bright)."""
    return (batch[..., :1] > 0.55).astype(np.float32)


@pytest.fixture(scope="module")
def layout(lgg_root, tmp_path_factory):
    patients = sorted(p.name for p in lgg_root.iterdir() if p.is_dir())[:4]
    root = tmp_path_factory.mktemp("evaluate-layout")
    build_layout(lgg_root, patients, root, numbers=NUMBERS, step=4)
    return root, patients


@pytest.fixture(scope="module")
def predicted(layout, tmp_path_factory):
    """Masks that `segkit predict` writes for the layout's images with the stand-in model."""
    root, _ = layout
    out = tmp_path_factory.mktemp("predicted")
    segmenter = Segmenter(bright, Preprocessing(size=(64, 64)), "bright")
    segkit.volumes.predict_volumes(segmenter, [root / "imagesTr"], out)
    return out, segmenter


def surface_points(mask: np.ndarray, spacing) -> np.ndarray:
    """Millimetre coordinates of the voxels of ``mask`` with a background 6-neighbour (outside
    the volume counting as background): the surfaces MONAI measures between."""
    padded = np.pad(mask.astype(bool), 1)
    inside = padded.copy()
    for axis in range(3):
        for shift in (1, -1):
            inside &= np.roll(padded, shift, axis=axis)
    surface = (padded & ~inside)[1:-1, 1:-1, 1:-1]
    return np.argwhere(surface) * np.asarray(spacing)


def independent_scores(predicted: np.ndarray, truth: np.ndarray, spacing) -> dict:
    """3-D Dice, HD95 and ASSD from their definitions: every surface voxel against every other."""
    predicted, truth = predicted.astype(bool), truth.astype(bool)
    overlap = np.count_nonzero(predicted & truth)
    dice = 2 * overlap / (np.count_nonzero(predicted) + np.count_nonzero(truth))
    if not predicted.any() or not truth.any():
        return {"dice": dice, "hd95": None, "assd": None}
    distances = cdist(surface_points(predicted, spacing), surface_points(truth, spacing))
    to_truth, to_predicted = distances.min(axis=1), distances.min(axis=0)
    return {
        "dice": dice,
        "hd95": max(np.percentile(to_truth, 95), np.percentile(to_predicted, 95)),
        "assd": np.concatenate([to_truth, to_predicted]).mean(),
    }


def test_cli_scores_each_volume_in_millimetres(layout, predicted, tmp_path):
    root, patients = layout
    folder, _ = predicted
    result = CliRunner().invoke(
        cli,
        ["evaluate", "--predictions", str(folder), "--data", str(root), "--quiet"]
        + ["--out", str(tmp_path / "report.json")],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert [v["case"] for v in report["volumes"]] == patients
    checked = 0
    for record in report["volumes"]:
        predicted_file = nib.load(folder / f"{record['case']}_mask.nii.gz")
        truth_file = nib.load(root / "labelsTr" / f"{record['case']}.nii.gz")
        spacing = np.linalg.norm(truth_file.affine[:3, :3], axis=0)
        expected = independent_scores(
            np.asanyarray(predicted_file.dataobj), np.asanyarray(truth_file.dataobj), spacing
        )
        assert record["spacing_mm"] == [4.0, 4.0, 3.0] and record["slices"] == len(NUMBERS)
        assert record["dice"] == pytest.approx(expected["dice"])
        if expected["hd95"] is None:
            assert record["hd95_mm"] is None and record["assd_mm"] is None
        else:
            checked += 1
            assert record["hd95_mm"] == pytest.approx(expected["hd95"])
            assert record["assd_mm"] == pytest.approx(expected["assd"])
    assert checked >= 2  # distances were compared on real tumours, not only on empty masks
    assert report["n_volumes"] == len(patients)
    assert report["volume_dice_mean"] == pytest.approx(
        np.mean([v["dice"] for v in report["volumes"]])
    )
    # The per-slice report is there as before, one image per slice.
    assert report["n_images"] == len(patients) * len(NUMBERS)
    assert {"dice_mean", "dice_pooled", "hd95_mean", "images"} <= report.keys()
    assert "all volumes" in result.output and "hd95 and assd in mm" in result.output
    for patient in patients:
        assert patient in result.output


def test_a_model_scores_as_its_written_masks_do(layout, predicted):
    root, _ = layout
    folder, segmenter = predicted
    from_model = evaluate(segmenter, root)
    from_files = evaluate(None, root, predictions=folder)
    assert from_model["volumes"] == from_files["volumes"]
    assert from_model["images"] == from_files["images"]
    assert "all volumes" in format_table(from_model)


def test_the_slices_scored_are_the_volumes_slices(layout, predicted):
    root, patients = layout
    folder, _ = predicted
    report = evaluate(None, root, predictions=folder)
    first = report["images"][3]
    assert first["key"] == f"{patients[0]}_3"
    truth = np.asanyarray(nib.load(root / "labelsTr" / f"{patients[0]}.nii.gz").dataobj)[..., 3]
    mask = np.asanyarray(nib.load(folder / f"{patients[0]}_mask.nii.gz").dataobj)[..., 3]
    overlap = np.count_nonzero(truth & mask)
    total = np.count_nonzero(truth) + np.count_nonzero(mask)
    assert first["dice"] == pytest.approx(2 * overlap / total if total else 1.0)


def test_label_maps_and_unlabelled_voxels(layout, tmp_path):
    """Two tumour classes (the left and right halves of each tumour) and unlabelled voxels:
    3-D Dice per class, and the mean over the classes, against NumPy."""
    root, patients = layout
    data_dir = tmp_path / "classes"
    for sub in ("imagesTr", "labelsTr"):
        (data_dir / sub).mkdir(parents=True)
    predictions = tmp_path / "predictions"
    predictions.mkdir()
    rng = np.random.default_rng(0)
    expected = []
    for patient in patients:
        image = root / "imagesTr" / f"{patient}.nii.gz"
        (data_dir / "imagesTr" / image.name).write_bytes(image.read_bytes())
        labels = nib.load(root / "labelsTr" / f"{patient}.nii.gz")
        tumour = np.asanyarray(labels.dataobj).astype(np.uint8)
        truth = tumour * np.where(np.arange(tumour.shape[0])[:, None, None] < 32, 1, 2)
        truth = truth.astype(np.uint8)
        truth[rng.random(truth.shape) < 0.01] = 255
        guess = np.roll(np.where(tumour > 0, truth % 255, 0), 1, axis=1).astype(np.uint8)
        guess[(guess == 0) & (rng.random(guess.shape) < 0.002)] = 1
        write_nifti(data_dir / "labelsTr" / f"{patient}.nii.gz", truth, labels.affine)
        write_nifti(predictions / f"{patient}.nii.gz", guess, labels.affine)  # nnU-Net's names
        kept = truth != 255
        dices = []
        for k in (1, 2):
            a, b = (guess == k) & kept, (truth == k) & kept
            if a.any() or b.any():
                dices.append(
                    2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))
                )
        expected.append(np.mean(dices) if dices else None)
    (data_dir / "classes.json").write_text(json.dumps(["background", "left", "right"]))
    report = evaluate(None, data_dir, predictions=predictions, ignore_index=255)
    assert sum(dice is not None for dice in expected) >= 2
    for record, dice in zip(report["volumes"], expected, strict=True):
        assert set(record["classes"]) == {"left", "right"}
        if dice is not None:
            assert record["dice"] == pytest.approx(dice)


def test_bad_predictions_name_the_file(layout, predicted, tmp_path):
    root, patients = layout
    folder, _ = predicted
    partial = tmp_path / "partial"
    partial.mkdir()
    for patient in patients[1:]:
        name = f"{patient}_mask.nii.gz"
        (partial / name).write_bytes((folder / name).read_bytes())
    with pytest.raises(FileNotFoundError, match=f"lacks {patients[0]}_mask.nii.gz"):
        evaluate(None, root, predictions=partial)
    labels = nib.load(folder / f"{patients[0]}_mask.nii.gz")
    cut = partial / f"{patients[0]}_mask.nii.gz"
    write_nifti(cut, np.asanyarray(labels.dataobj)[:, :, :-1], labels.affine)
    with pytest.raises(DataError, match=rf"label volume {cut} has shape \(64, 64, 7\)"):
        evaluate(None, root, predictions=partial)
    with pytest.raises(ValueError, match="at_model_size: volumes are scored at their own voxels"):
        evaluate(predicted[1], root, at_model_size=True)


def test_a_partial_volume_has_no_3d_score(layout, predicted, tmp_path):
    """A slice-wise random split scatters a volume's slices: none of its parts is a volume."""
    root, _ = layout
    folder, _ = predicted
    samples = data.find_samples(root)
    split = data.split_samples(samples, "random", fractions=(0.5, 0.25, 0.25), seed=0)
    split.save(tmp_path / "split.json")
    report = evaluate(
        None, root, predictions=folder, manifest=tmp_path / "split.json", subset="test"
    )
    assert report["n_images"] == len(split.test)
    assert "volumes" not in report
