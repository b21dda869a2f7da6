"""Record the masks the shipped weights give on the bundled sample (run by hand, on TensorFlow).

    python tools/pretrained_reference.py

Writes ``tests/vectors/pretrained_masks.npz``: for each shipped ``model.tag``, the weights'
SHA-256 and the 256x256 masks of the bundled slices, made with the inference defaults the
weights file's header stores (test-time augmentation, threshold, post-processing). The test
suite checks that every backend gives the same masks (with ``reference_masks``, so both compute
them one way); rerun this after retraining or tuning.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segkit import data
from segkit._io import atomic_path
from segkit.demo import sample_dir
from segkit.inference import image_files, load_model
from segkit.models import pretrained, split_name

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "tests/vectors/pretrained_masks.npz"


def reference_masks(name: str) -> np.ndarray:
    """Masks ``(N, 256, 256)`` of the bundled slices, in file order, at the model's size."""
    segmenter = load_model(name)
    paths = image_files([sample_dir() / "images"])
    images = [data.read_image(p, segmenter.prep.channels) for p in paths]
    # The rule `segkit predict` uses, so the reference is what users get.
    return np.stack([segmenter.to_mask(p) for p in segmenter.predict(images)]).astype(bool)


def main() -> None:
    arrays = {}
    for name in pretrained.available():
        masks = reference_masks(name)
        arrays[f"{name}.masks"] = np.packbits(masks, axis=-1)
        arrays[f"{name}.sha256"] = np.array(pretrained.PRETRAINED[split_name(name)].sha256)
        print(name, masks.shape, f"{masks.mean():.4f} foreground")
    with atomic_path(TARGET) as tmp:
        np.savez_compressed(tmp, **arrays)
    print("wrote", TARGET)


if __name__ == "__main__":
    main()
