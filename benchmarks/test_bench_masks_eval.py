"""segkit's RLE and HD95 beside plain reference implementations.

Run with ``pytest benchmarks/test_bench_masks_eval.py --benchmark-only``. Each group pairs
segkit with its reference, so the table shows the ratio directly.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from segkit import evaluation, masks

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SEGKIT_SHARED_DATA", ROOT.parent / "shared" / "data"))
MASK_DIR = SHARED_DATA / "figshare-brain-tumor-256" / "masks"

NUM_RLE_MASKS = 3000
NUM_HD_PAIRS = 500


def _synthetic_masks(count: int) -> list[np.ndarray]:
    """Blobby 256x256 masks: smoothed noise thresholded, a stand-in for real lesions."""
    rng = np.random.default_rng(0)
    result = []
    for _ in range(count):
        noise = ndimage.gaussian_filter(rng.random((256, 256)), 12)
        result.append((noise > np.quantile(noise, 0.97)).astype(np.uint8))
    return result


@pytest.fixture(scope="module")
def real_masks() -> list[np.ndarray]:
    """3,000 256x256 masks: the real Figshare ones (cycled) when present, else synthetic."""
    paths = sorted(MASK_DIR.glob("*_mask.png"))
    if not paths:
        return _synthetic_masks(NUM_RLE_MASKS)
    import imageio.v3 as iio

    loaded = [(iio.imread(path) > 0).astype(np.uint8) for path in paths]
    return [loaded[i % len(loaded)] for i in range(NUM_RLE_MASKS)]


@pytest.fixture(scope="module")
def mask_pairs(real_masks) -> list[tuple[np.ndarray, np.ndarray]]:
    """Prediction-like pairs: each mask against a dilated, shifted copy of itself."""
    pairs = []
    for i, true in enumerate(real_masks[:NUM_HD_PAIRS]):
        pred = ndimage.binary_dilation(true, iterations=1 + i % 3)
        pairs.append((np.roll(pred, (i % 5) - 2, axis=1).astype(np.uint8), true))
    return pairs


def reference_rle_encode(mask: np.ndarray) -> str:
    """The widely copied Kaggle one-liner encoder (column-major, 1-based)."""
    pixels = np.concatenate([[0], mask.T.flatten(), [0]])
    runs = np.where(pixels[1:] != pixels[:-1])[0] + 1
    runs[1::2] -= runs[::2]
    return " ".join(str(x) for x in runs)


def reference_rle_decode(rle: str, shape: tuple[int, int]) -> np.ndarray:
    """The usual Kaggle decoder: a Python loop over the runs."""
    numbers = rle.split()
    starts, lengths = (np.asarray(x, dtype=int) for x in (numbers[0::2], numbers[1::2]))
    starts -= 1
    flat = np.zeros(shape[0] * shape[1], dtype=np.uint8)
    for start, length in zip(starts, lengths, strict=True):
        flat[start : start + length] = 1
    return flat.reshape(shape, order="F")


def _run(benchmark, function, *args):
    return benchmark.pedantic(function, args=args, rounds=3, iterations=1, warmup_rounds=0)


@pytest.mark.benchmark(group="rle-encode-3000")
def test_rle_encode_segkit(benchmark, real_masks):
    encoded = _run(benchmark, lambda ms: [masks.rle_encode(m) for m in ms], real_masks)
    assert encoded[:50] == [reference_rle_encode(m) for m in real_masks[:50]]


@pytest.mark.benchmark(group="rle-encode-3000")
def test_rle_encode_reference(benchmark, real_masks):
    _run(benchmark, lambda ms: [reference_rle_encode(m) for m in ms], real_masks)


@pytest.fixture(scope="module")
def encoded_masks(real_masks) -> list[str]:
    return [masks.rle_encode(m) for m in real_masks]


@pytest.mark.benchmark(group="rle-decode-3000")
def test_rle_decode_segkit(benchmark, encoded_masks, real_masks):
    decoded = _run(
        benchmark, lambda rles: [masks.rle_decode(r, (256, 256)) for r in rles], encoded_masks
    )
    np.testing.assert_array_equal(decoded[7], real_masks[7])


@pytest.mark.benchmark(group="rle-decode-3000")
def test_rle_decode_reference(benchmark, encoded_masks):
    _run(benchmark, lambda rles: [reference_rle_decode(r, (256, 256)) for r in rles], encoded_masks)


@pytest.mark.benchmark(group="hd95-500")
def test_hd95_segkit(benchmark, mask_pairs):
    _run(benchmark, lambda pairs: [evaluation.hd95(p, t) for p, t in pairs], mask_pairs)


@pytest.mark.benchmark(group="hd95-500")
def test_hd95_monai(benchmark, mask_pairs):
    monai_metrics = pytest.importorskip(
        "monai.metrics", reason="MONAI is not installed; pip install monai to compare"
    )
    import torch

    def monai_hd95(pairs):
        return [
            float(
                monai_metrics.compute_hausdorff_distance(
                    torch.from_numpy(p[None, None].astype(np.float32)),
                    torch.from_numpy(t[None, None].astype(np.float32)),
                    include_background=True,
                    percentile=95,
                )
            )
            for p, t in pairs
        ]

    benchmark.extra_info["baseline"] = True
    result = _run(benchmark, monai_hd95, mask_pairs)
    ours = [evaluation.hd95(p, t) for p, t in mask_pairs[:20]]
    np.testing.assert_allclose(ours, result[:20], rtol=1e-5, atol=1e-5)
