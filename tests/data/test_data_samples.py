"""Finding pairs in the three layouts, and reporting what is missing, extra or duplicated."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from segkit.data import DataError, detect_layout, find_samples
from segkit.data.samples import scan


def test_figshare_256_pairs_by_natural_order_with_labels(figshare_256):
    samples = find_samples(figshare_256)
    assert len(samples) == 2667
    assert [s.key for s in samples[:3]] == ["1", "2", "3"]
    assert all(s.mask.name == f"{s.key}_mask.png" for s in samples)
    keys = [int(s.key) for s in samples]
    assert keys == sorted(keys)
    assert {s.label for s in samples} == {1, 2, 3}
    assert samples[0].label_name == "meningioma"
    assert all(s.patient is None for s in samples)


def test_lgg_patients_and_slices_in_natural_order(lgg_root):
    samples = find_samples(lgg_root)
    assert len(samples) == 607
    assert len({s.patient for s in samples}) == 16
    first = [s for s in samples if s.patient == samples[0].patient]
    assert [int(s.key.rsplit("_", 1)[1]) for s in first] == list(range(1, len(first) + 1))
    assert all(s.mask.name == f"{s.key}_mask.tif" for s in samples)


def test_figshare_mat_label_and_patient(mat_folder):
    samples = find_samples(mat_folder)
    assert [s.key for s in samples] == ["1", "2", "3", "4", "5", "6"]
    assert [s.label for s in samples] == [1, 1, 2, 2, 3, 3]
    assert samples[2].label_name == "glioma"
    assert samples[2].patient == "102"
    assert all(s.layout == "figshare-mat" and s.image == s.mask for s in samples)


def test_layout_detection(folders_copy, lgg_copy, mat_folder):
    assert detect_layout(folders_copy) == "folders"
    assert detect_layout(lgg_copy) == "lgg"
    assert detect_layout(mat_folder) == "figshare-mat"


def test_subfolders_are_skipped(folders_copy):
    saliency = folders_copy / "images" / "saliency_maps"
    saliency.mkdir()
    shutil.copy(folders_copy / "images" / "38.png", saliency / "38.png")
    assert len(find_samples(folders_copy)) == 6


def test_missing_extra_and_duplicate_files_are_all_listed(folders_copy):
    (folders_copy / "masks" / "38_mask.png").unlink()
    (folders_copy / "images" / "152.png").unlink()
    shutil.copy(folders_copy / "images" / "770.png", folders_copy / "images" / "770 (1).png")
    with pytest.raises(DataError) as raised:
        find_samples(folders_copy)
    message = str(raised.value)
    assert "3 problem(s)" in message
    assert "38.png: missing mask" in message
    assert "152_mask.png: extra mask" in message
    assert "770 (1).png: duplicate of 770.png" in message
    kept = find_samples(folders_copy, on_problem="skip")
    assert [s.key for s in kept] == ["770", "955", "2550", "2639"]


def test_configurable_folder_names_and_suffix(tmp_path, folders_copy):
    root = tmp_path / "renamed"
    (root / "scans").mkdir(parents=True)
    (root / "labels").mkdir()
    for path in (folders_copy / "images").iterdir():
        shutil.copy(path, root / "scans" / path.name)
    for path in (folders_copy / "masks").iterdir():
        shutil.copy(path, root / "labels" / path.name.replace("_mask", "-seg"))
    samples = find_samples(
        root, "folders", images_dir="scans", masks_dir="labels", mask_suffix="-seg"
    )
    assert len(samples) == 6 and samples[0].mask.name == "38-seg.png"


def test_lgg_missing_mask_is_a_problem(lgg_copy):
    mask = next(lgg_copy.rglob("*_12_mask.tif"))
    mask.unlink()
    samples, problems = scan(lgg_copy)
    assert len(samples) == 7
    assert [p.file for p in problems] == [str(mask.with_name(mask.name.replace("_mask", "")))]


def test_lgg_problems_name_the_files_own_extension(lgg_copy):
    image = next(lgg_copy.rglob("*_12.tif"))
    mask = image.with_name(image.stem + "_mask.tif")
    lone_image = image.rename(image.with_suffix(".tiff"))
    other = next(lgg_copy.rglob("*_10.tif"))
    other.unlink()
    lone_mask = mask.rename(other.with_name(other.stem + "_mask.tiff"))
    other.with_name(other.stem + "_mask.tif").unlink()
    _, problems = scan(lgg_copy)
    assert sorted((Path(p.file).name, p.problem) for p in problems) == sorted(
        [
            (lone_image.name, f"missing mask {image.stem}_mask.tiff"),
            (lone_mask.name, f"extra mask: no image {other.stem}.tiff"),
        ]
    )


def test_lgg_slice_saved_twice_is_a_duplicate(lgg_copy):
    image = next(lgg_copy.rglob("*_12.tif"))
    twice = image.with_suffix(".tiff")
    shutil.copy(image, twice)
    samples, problems = scan(lgg_copy)
    assert len(samples) == 8
    assert [(p.file, p.problem) for p in problems] == [(str(twice), f"duplicate of {image.name}")]


def test_empty_and_unknown_folders(tmp_path: Path):
    with pytest.raises(DataError, match="empty folder"):
        find_samples(tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="cannot tell the layout"):
        find_samples(tmp_path)
    with pytest.raises(DataError, match="unknown layout"):
        find_samples(tmp_path, layout="nifti")
    with pytest.raises(DataError, match="not a folder"):
        find_samples(tmp_path / "absent")


def test_folder_layout_without_pairs(tmp_path: Path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(DataError, match="no samples found"):
        find_samples(tmp_path)
