"""Record the saliency maps of the shipped weights on a bundled slice (run by hand, on TensorFlow).

    KERAS_BACKEND=tensorflow python tools/saliency_reference.py

Writes ``tests/vectors/saliency_reference.npz``: for ``resunet.figshare`` and slice 172, the
gradient, Grad-CAM and (coarse) occlusion maps, averaged over 4x4 blocks to keep the file
small, and the weights' SHA-256. The test suite checks that torch and JAX give the same maps
(with ``reference_maps``, so both compute them one way); rerun this after retraining.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segkit import data
from segkit._io import atomic_path
from segkit.demo import sample_dir
from segkit.explain import saliency
from segkit.inference import load_model
from segkit.models import pretrained, split_name

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "tests/vectors/saliency_reference.npz"
MODEL = "resunet.figshare"
SLICE = "172"
BLOCK = 4
#: Each method's settings; occlusion's coarse patches keep the test quick.
METHODS = {"gradient": {}, "gradcam": {}, "occlusion": {"patch": 64, "stride": 64}}


def reference_maps() -> dict[str, np.ndarray]:
    """Each method's map of the slice, at its size averaged over ``BLOCK`` x ``BLOCK`` blocks."""
    segmenter = load_model(MODEL)
    image = data.read_image(sample_dir() / "images" / f"{SLICE}.png", segmenter.prep.channels)
    maps = {}
    for method, options in METHODS.items():
        found = saliency(segmenter, image, method=method, **options)
        height, width = found.shape
        blocks = found.reshape(height // BLOCK, BLOCK, width // BLOCK, BLOCK)
        maps[method] = blocks.mean(axis=(1, 3)).astype(np.float32)
    return maps


def main() -> None:
    arrays = {f"{method}.map": found for method, found in reference_maps().items()}
    arrays["sha256"] = np.array(pretrained.PRETRAINED[split_name(MODEL)].sha256)
    with atomic_path(TARGET) as tmp:
        np.savez_compressed(tmp, **arrays)
    print("wrote", TARGET, f"({TARGET.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
