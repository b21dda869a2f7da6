"""Small copies of the real data, and Figshare .mat files written as MATLAB writes them."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

# Figshare 512 originals copied for the folder-layout tests: two per class, one natively 256.
FOLDER_KEYS = ("38", "152", "770", "955", "2550", "2639")


def write_figshare_mat(
    path: Path, image: np.ndarray, mask: np.ndarray, label: int, patient: str
) -> Path:
    """Write a slice the way the Figshare release stores it (MATLAB v7.3, i.e. HDF5).

    ``cjdata`` holds ``image`` (int16), ``tumorMask`` (uint8), ``label`` (double 1x1), ``PID``
    (char, stored as uint16 codes) and ``tumorBorder`` (double). MATLAB writes arrays
    column-major, so the HDF5 datasets hold the transpose of the ``(rows, cols)`` arrays.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w", userblock_size=512) as f:
        data = f.create_group("cjdata")

        def put(name, array, matlab_class):
            dataset = data.create_dataset(name, data=np.asarray(array).T)
            dataset.attrs["MATLAB_class"] = np.bytes_(matlab_class)

        put("image", image.astype(np.int16), "int16")
        put("tumorMask", mask.astype(np.uint8), "uint8")
        put("label", np.array([[float(label)]]), "double")
        put("PID", np.array([[ord(c) for c in patient]], np.uint16), "char")
        rows, cols = np.nonzero(mask)
        put("tumorBorder", np.array([np.r_[rows[:4], cols[:4]]], np.float64), "double")
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2015 HDF5"
    with path.open("r+b") as f:  # MATLAB's text header lives in the 512-byte user block
        f.write(header.ljust(128))
    return path


@pytest.fixture
def folders_copy(tmp_path: Path, figshare_512: Path) -> Path:
    """A few Figshare originals in the folder layout, with their labels.csv rows."""
    root = tmp_path / "figshare"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for key in FOLDER_KEYS:
        shutil.copy(figshare_512 / "images" / f"{key}.png", root / "images")
        shutil.copy(figshare_512 / "masks" / f"{key}_mask.png", root / "masks")
    lines = (figshare_512 / "labels.csv").read_text().splitlines()
    rows = [line for line in lines[1:] if line.split(",")[0] in FOLDER_KEYS]
    (root / "labels.csv").write_text("\n".join([lines[0], *rows]) + "\n")
    return root


@pytest.fixture
def lgg_copy(tmp_path: Path, lgg_root: Path) -> Path:
    """Two LGG patients, four slices each (the first slices of a scan have empty masks)."""
    root = tmp_path / "kaggle_3m"
    for patient in sorted(p for p in lgg_root.iterdir() if p.is_dir())[:2]:
        (root / patient.name).mkdir(parents=True)
        for k in (1, 2, 10, 12):
            for suffix in ("", "_mask"):
                name = f"{patient.name}_{k}{suffix}.tif"
                if (patient / name).exists():
                    shutil.copy(patient / name, root / patient.name / name)
    return root


@pytest.fixture
def mat_folder(tmp_path: Path) -> Path:
    """Six synthetic Figshare .mat slices in two release folders: 3 labels, 3 patients."""
    rng = np.random.default_rng(0)
    root = tmp_path / "figshare-mat"
    for index in range(1, 7):
        image = rng.integers(0, 3000, size=(48, 40)).astype(np.int16)  # not square: orientation
        mask = np.zeros((48, 40), np.uint8)
        mask[10:20, 5:15] = 1
        folder = root / ("brainTumorDataPublic_1-3" if index <= 3 else "brainTumorDataPublic_4-6")
        label = (index - 1) // 2 + 1
        write_figshare_mat(folder / f"{index}.mat", image, mask, label, f"10{label}")
    return root
