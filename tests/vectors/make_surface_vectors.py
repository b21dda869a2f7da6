"""Regenerate surface_distances.json: MONAI and MedPy reference scores on real mask pairs.

Run from the repository root with MONAI and MedPy installed (neither is needed to run the
tests, which read the stored numbers):

    python tests/vectors/make_surface_vectors.py

Each pair is a real Figshare mask as ``true`` and, as ``pred``, a deterministic change of it
(erosion, dilation, shift) or another patient's mask, so the pairs look like predictions.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from scipy import ndimage

from segkit.masks import rle_encode

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DATA = Path(os.environ.get("SEGKIT_SHARED_DATA", ROOT.parent / "shared" / "data"))
MASKS = DATA / "figshare-brain-tumor-256" / "masks"

# (true mask id, change, spacing): the change makes the prediction.
PAIRS = [
    (1, "erode 2", (1.0, 1.0)),
    (37, "dilate 3", (1.0, 1.0)),
    (101, "shift 5 -3", (1.0, 1.0)),
    (150, "other 151", (1.0, 1.0)),
    (222, "erode 1 shift 2 2", (1.0, 1.0)),
    (300, "dilate 1 shift -4 0", (0.5, 0.5)),
    (404, "other 1404", (1.0, 1.0)),
    (512, "erode 4", (0.7, 1.3)),
    (720, "shift 0 9", (1.0, 1.0)),
    (777, "dilate 6", (1.0, 2.0)),
    (888, "other 889", (0.49, 0.49)),
    (999, "erode 1", (1.0, 1.0)),
    (1111, "shift -2 -2", (1.0, 1.0)),
    (1234, "dilate 2 shift 3 -5", (0.8, 0.8)),
    (1500, "other 2600", (1.0, 1.0)),
    (1850, "erode 3 shift 1 0", (1.0, 1.0)),
    (2000, "dilate 4", (1.0, 1.0)),
    (2222, "shift 12 12", (1.0, 1.0)),
    (2400, "other 2401", (1.0, 0.6)),
    (3064, "identity", (1.0, 1.0)),
    (42, "empty", (1.0, 1.0)),
]


def load(mask_id: int) -> np.ndarray:
    return iio.imread(MASKS / f"{mask_id}_mask.png") > 0


def change(mask: np.ndarray, how: str) -> np.ndarray:
    words = how.split()
    while words:
        op = words.pop(0)
        if op == "erode":
            mask = ndimage.binary_erosion(mask, iterations=int(words.pop(0)))
        elif op == "dilate":
            mask = ndimage.binary_dilation(mask, iterations=int(words.pop(0)))
        elif op == "shift":
            dy, dx = int(words.pop(0)), int(words.pop(0))
            mask = ndimage.shift(mask.astype(np.uint8), (dy, dx), order=0) > 0
        elif op == "other":
            mask = load(int(words.pop(0)))
        elif op == "empty":
            mask = np.zeros_like(mask)
        elif op != "identity":
            raise ValueError(how)
    return mask


def main() -> None:
    import medpy.metric.binary as medpy_binary
    import monai
    import torch
    from monai.metrics import (
        compute_average_surface_distance,
        compute_dice,
        compute_hausdorff_distance,
    )

    vectors = []
    for true_id, how, spacing in PAIRS:
        true = load(true_id)
        pred = change(true, how)
        as_batch = [torch.from_numpy(m[None, None].astype(np.float32)) for m in (pred, true)]
        kwargs = dict(include_background=True, spacing=list(spacing))
        entry = {
            "true_id": true_id,
            "change": how,
            "spacing": list(spacing),
            "shape": list(true.shape),
            "true_rle": rle_encode(true),
            "pred_rle": rle_encode(pred),
            "monai_hd95": float(compute_hausdorff_distance(*as_batch, percentile=95, **kwargs)),
            "monai_assd": float(
                compute_average_surface_distance(*as_batch, symmetric=True, **kwargs)
            ),
            "monai_dice": float(compute_dice(*as_batch, include_background=True)),
        }
        if pred.any() and true.any():
            entry["medpy_hd95"] = float(medpy_binary.hd95(pred, true, voxelspacing=spacing))
            entry["medpy_assd"] = float(medpy_binary.assd(pred, true, voxelspacing=spacing))
        vectors.append(entry)
    out = {
        "about": "MONAI defaults (percentile=95; symmetric ASSD) and MedPy on Figshare mask pairs",
        "monai": monai.__version__,
        "medpy": "0.5.2",
        "pairs": vectors,
    }
    (HERE / "surface_distances.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
