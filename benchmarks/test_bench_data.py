"""Loading the Figshare slices with segkit.data against the notebook's loop.

The notebook read one file at a time with Keras' ``load_img`` + ``img_to_array`` and resized with
skimage. segkit decodes in parallel threads and, with a cache, reads decoded slices back from
``.npy`` memory-maps. Each test times, in one run: the notebook loop, segkit's first load (no
cache), and segkit's load from a filled cache, and records the speed-ups in ``extra_info``.

Run: ``pytest benchmarks/test_bench_data.py -s`` (needs ``../shared/data``; the notebook
comparison needs scikit-image, which segkit does not depend on).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from segkit.data import Preprocessing, find_samples, load_arrays

PREP = Preprocessing()  # the notebook's: 256x256 greyscale divided by 255

# The same place tests/conftest.py looks for the real data.
ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SEGKIT_SHARED_DATA", ROOT.parent / "shared" / "data"))
FOLDERS = {
    "figshare_256": "figshare-brain-tumor-256",  # 2,667 slices
    "figshare_512": "figshare-brain-tumor-512-sample",  # 26 originals, resized to 256
}


def notebook_load(samples):
    """The notebook's loop, one file at a time."""
    from keras.utils import img_to_array, load_img
    from skimage.transform import resize

    images = np.zeros((len(samples), 256, 256, 1), np.float32)
    masks = np.zeros((len(samples), 256, 256, 1), np.float32)
    for n, sample in enumerate(samples):
        image = img_to_array(load_img(sample.image, color_mode="grayscale"))
        images[n] = resize(image, (256, 256, 1), mode="constant", preserve_range=True) / 255
        mask = img_to_array(load_img(sample.mask, color_mode="grayscale"))
        masks[n] = resize(mask, (256, 256, 1), mode="constant", preserve_range=True) / 255
    return images, masks


def _seconds(function, *args, rounds: int = 1, **kwargs) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        function(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return best


@pytest.mark.slow
@pytest.mark.parametrize("folder", ["figshare_256", "figshare_512"])
def test_load_figshare(folder, benchmark, tmp_path):
    root = SHARED_DATA / FOLDERS[folder]
    if not root.is_dir():
        pytest.skip(f"real data not found at {root} (set SEGKIT_SHARED_DATA to its folder)")
    samples = find_samples(root)
    cache = tmp_path / "cache"
    # A virtual machine hands out fresh memory slowly the first time it is touched; touch as much
    # as the loaders will use first, so that no loader pays for it alone.
    np.ones((2 * len(samples), 256, 256, 1), np.float32)

    cold = _seconds(load_arrays, samples, PREP, rounds=2)  # decodes every file, no cache
    fill = _seconds(load_arrays, samples, PREP, cache=cache)  # decodes and writes the cache
    benchmark.pedantic(load_arrays, (samples, PREP), {"cache": cache}, rounds=3, iterations=1)
    cached = benchmark.stats.stats.min

    info = {"n": len(samples), "cold_s": cold, "cache_fill_s": fill, "cached_s": cached}
    try:
        import skimage  # noqa: F401
    except ImportError:
        info["notebook"] = "skipped: scikit-image is not installed"
    else:
        notebook = _seconds(notebook_load, samples)
        info.update(notebook_s=notebook, cold_speedup=notebook / cold)
        info["cached_speedup"] = notebook / cached
    benchmark.extra_info.update(info)
    print(
        f"\n{folder}: "
        + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items())
    )
