"""Regenerate volume_surface_distances.json: MONAI's 3-D scores on real LGG tumour volumes.

Run from the repository root with MONAI installed (it is not needed to run the tests, which
read the stored numbers):

    python tests/vectors/make_volume_vectors.py

Each ``true`` mask is one LGG patient's tumour masks stacked in slice-number order, ``(K, H,
W)``, cropped to the tumour's box plus a margin; ``pred`` is a deterministic 3-D change of it
(erosion, dilation, a shift, a slice left out) so the pairs look like predictions. The spacings,
slice axis first, are stated for the test, not recorded by the release.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import tifffile
from natsort import natsorted
from scipy import ndimage

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DATA = Path(os.environ.get("SEGKIT_SHARED_DATA", ROOT.parent / "shared" / "data"))
LGG = DATA / "lgg-mri-segmentation" / "kaggle_3m"
MARGIN = 6  # pixels (and one slice) around the tumour's box

# (patient, change, spacing of (slice, row, column)): the change makes the prediction.
PAIRS = [
    ("TCGA_CS_4943_20000902", "erode 1", (3.0, 1.0, 1.0)),
    ("TCGA_DU_7018_19911220", "dilate 2", (3.0, 0.5, 0.5)),
    ("TCGA_HT_7692_19960724", "shift 1 3 -2", (2.5, 1.0, 1.0)),
    ("TCGA_FG_8189_20030516", "erode 1 shift 0 2 2", (1.0, 1.0, 1.0)),
    ("TCGA_DU_6401_19831001", "dilate 1 shift 1 0 0", (5.0, 0.9, 0.9)),
    ("TCGA_DU_A5TR_19970726", "drop 3", (3.0, 0.8, 0.8)),
    ("TCGA_HT_7694_19950404", "identity", (3.3, 0.7, 0.7)),
    ("TCGA_CS_6290_20000917", "empty", (3.0, 1.0, 1.0)),
]


def load(patient: str) -> np.ndarray:
    """A patient's tumour masks, ``bool (K, H, W)`` in slice order, cropped around the tumour."""
    files = natsorted((LGG / patient).glob("*_mask.tif"))
    volume = np.stack([tifffile.imread(f) > 0 for f in files])
    box = ndimage.find_objects(volume.astype(np.uint8))[0]
    box = tuple(
        slice(max(s.start - MARGIN, 0), min(s.stop + MARGIN, size))
        if axis
        else slice(max(s.start - 1, 0), min(s.stop + 1, size))
        for axis, (s, size) in enumerate(zip(box, volume.shape))
    )
    return volume[box]


def change(mask: np.ndarray, how: str) -> np.ndarray:
    words = how.split()
    while words:
        op = words.pop(0)
        if op == "erode":
            mask = ndimage.binary_erosion(mask, iterations=int(words.pop(0)))
        elif op == "dilate":
            mask = ndimage.binary_dilation(mask, iterations=int(words.pop(0)))
        elif op == "shift":
            offset = [int(words.pop(0)) for _ in range(3)]
            mask = ndimage.shift(mask.astype(np.uint8), offset, order=0) > 0
        elif op == "drop":  # a slice the prediction missed
            mask = mask.copy()
            mask[int(words.pop(0))] = False
        elif op == "empty":
            mask = np.zeros_like(mask)
        elif op != "identity":
            raise ValueError(how)
    return mask


def encode(mask: np.ndarray) -> str:
    """Run-length code of a 3-D mask (segkit.masks.rle_encode of its (K*H, W) rows)."""
    from segkit.masks import rle_encode

    return rle_encode(mask.reshape(-1, mask.shape[-1]))


def main() -> None:
    import monai
    import torch
    from monai.metrics import (
        compute_average_surface_distance,
        compute_dice,
        compute_hausdorff_distance,
    )

    vectors = []
    for patient, how, spacing in PAIRS:
        true = load(patient)
        pred = change(true, how)
        as_batch = [torch.from_numpy(m[None, None].astype(np.float32)) for m in (pred, true)]
        kwargs = dict(include_background=True, spacing=list(spacing))
        vectors.append(
            {
                "patient": patient,
                "change": how,
                "spacing": list(spacing),
                "shape": list(true.shape),
                "true_rle": encode(true),
                "pred_rle": encode(pred),
                "monai_hd95": float(compute_hausdorff_distance(*as_batch, percentile=95, **kwargs)),
                "monai_assd": float(
                    compute_average_surface_distance(*as_batch, symmetric=True, **kwargs)
                ),
                "monai_dice": float(compute_dice(*as_batch, include_background=True)),
            }
        )
    out = {
        "about": "MONAI defaults (percentile=95; symmetric ASSD) on LGG tumour volumes",
        "monai": monai.__version__,
        "pairs": vectors,
    }
    (HERE / "volume_surface_distances.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
