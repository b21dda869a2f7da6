"""Inspection of real data folders and of a corrupted copy."""

from __future__ import annotations

import json
import shutil

import numpy as np
from PIL import Image

from segkit.data import inspect

REPORT_KEYS = {"n_pairs", "n_patients", "image_sizes", "mask_coverage", "problems"}


def test_figshare_256(figshare_256):
    report = inspect(figshare_256)
    assert report.ok and report.layout == "folders"
    assert report.n_pairs == 2667 and report.n_patients is None
    assert report.image_sizes == {"256x256": 2667}
    assert report.mask_coverage["empty"] == 0
    assert set(report.labels) == {"meningioma", "glioma", "pituitary"}
    data = report.to_dict()
    assert REPORT_KEYS <= data.keys()
    json.dumps(data)


def test_figshare_512_sample(figshare_512):
    report = inspect(figshare_512, layout="folders")
    assert report.ok and report.n_pairs == 26
    assert report.image_sizes["512x512"] > 20
    assert "no problems found" in report.format()


def test_lgg(lgg_root):
    report = inspect(lgg_root)
    assert report.ok and report.layout == "lgg"
    assert (report.n_pairs, report.n_patients) == (607, 16)
    assert 0 < report.mask_coverage["empty"] < 607
    assert "patients:    16" in report.format()


def test_figshare_mat(mat_folder):
    report = inspect(mat_folder)
    assert report.ok and report.n_patients == 3 and report.image_sizes == {"40x48": 6}


def test_corrupted_copy_lists_every_problem(folders_copy):
    images, masks = folders_copy / "images", folders_copy / "masks"
    (masks / "38_mask.png").unlink()  # missing
    shutil.copy(masks / "152_mask.png", masks / "9999_mask.png")  # extra
    shutil.copy(images / "152.png", images / "152 (1).png")  # duplicate
    truncated = images / "770.png"
    truncated.write_bytes(truncated.read_bytes()[:2000])  # unreadable
    shutil.copy(masks / "2550_mask.png", masks / "955_mask.png")  # 512 mask for a 256 image
    grey = np.asarray(Image.open(masks / "2639_mask.png")).copy()
    grey[grey == 255] = 128
    grey[0, 0] = 255
    Image.fromarray(grey).save(masks / "2639_mask.png")  # non-binary

    report = inspect(folders_copy)
    assert not report.ok
    found = {p.file.rsplit("/", 1)[1]: p.problem for p in report.problems}
    assert set(found) == {
        "38.png",
        "9999_mask.png",
        "152 (1).png",
        "770.png",
        "955_mask.png",
        "2639_mask.png",
    }
    assert "missing mask" in found["38.png"]
    assert "extra mask" in found["9999_mask.png"]
    assert "duplicate of 152.png" in found["152 (1).png"]
    assert "cannot read" in found["770.png"]
    assert "256x256 but its mask" in found["955_mask.png"]
    assert "not binary" in found["2639_mask.png"]
    assert report.n_pairs == 5
    assert report.image_sizes == {"512x512": 2}
    text = report.format()
    assert "6 problem(s)" in text and "770.png" in text
    problems = report.to_dict()["problems"]
    assert all(set(p) == {"file", "problem"} for p in problems)
