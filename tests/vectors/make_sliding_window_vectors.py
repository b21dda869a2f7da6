"""Regenerate sliding_window.npz: MONAI's ``sliding_window_inference`` on a fixed toy network.

Run from the repository root with MONAI installed (``pip install monai==1.6.1``; the tests do
not need it, they read the stored arrays):

    python tests/vectors/make_sliding_window_vectors.py

The "network" is one fixed convolution with zero padding and a sigmoid (`toy_predict`), so a
window's output near its border differs from its neighbour's: the blend is what is tested.
Inputs are small integers stored as ``uint8``; each case records MONAI's output with
``mode="gaussian"``, ``sigma_scale=0.125`` and constant zero padding. The ``mirror`` case wraps
the toy network in nnU-Net's mirroring (mean over every combination of flips).
`WEIGHT_PATCHES` records MONAI's Gaussian weight maps.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "sliding_window.npz"
CHANNELS_IN, CHANNELS_OUT = 2, 2

# name: (input spatial shape, patch, overlap, windows per batch, mirrored axes)
CASES = {
    "overlap_half": ((16, 19, 10), (8, 8, 6), 0.5, 4, ()),
    "overlap_quarter_odd_patch": ((16, 19, 10), (7, 9, 5), 0.25, 3, ()),
    "padded": ((5, 19, 4), (8, 8, 6), 0.5, 2, ()),
    "plane": ((23, 18), (8, 8), 0.5, 5, ()),
    "mirror": ((16, 19, 10), (8, 8, 6), 0.5, 4, (0, 1, 2)),
}

# Patches whose Gaussian weight maps (MONAI's compute_importance_map) are recorded too.
WEIGHT_PATCHES = [(8, 8, 6), (7, 9, 5), (16, 16, 16), (12, 5)]


def toy_weights(dims: int) -> tuple[np.ndarray, np.ndarray]:
    """The toy convolution's kernel ``(K, C, 3, ..., 3)`` and bias ``(K,)``, fixed by a seed."""
    rng = np.random.default_rng(dims)
    kernel = rng.normal(0, 0.3, (CHANNELS_OUT, CHANNELS_IN) + (3,) * dims).astype(np.float32)
    bias = rng.normal(0, 0.1, CHANNELS_OUT).astype(np.float32)
    return kernel, bias


def toy_predict(windows: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The toy network in numpy: ``(N, *patch, C)`` to ``(N, *patch, K)``, channels last, as
    segkit's callable; the same arithmetic as `_torch_predict` (cross-correlation, zero
    padding)."""
    from scipy import ndimage

    out = np.empty((*windows.shape[:-1], kernel.shape[0]), np.float32)
    for n, window in enumerate(windows.astype(np.float32)):
        for k in range(kernel.shape[0]):
            total = sum(
                ndimage.correlate(window[..., c], kernel[k, c], mode="constant", cval=0.0)
                for c in range(kernel.shape[1])
            )
            out[n, ..., k] = 1 / (1 + np.exp(-(total + bias[k])))
    return out


def _torch_predict(kernel: np.ndarray, bias: np.ndarray, mirror_axes: tuple[int, ...]):
    import torch
    import torch.nn.functional as F

    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[kernel.ndim - 2]
    weight, offset = torch.from_numpy(kernel), torch.from_numpy(bias)
    flips = [c for n in range(len(mirror_axes) + 1) for c in itertools.combinations(mirror_axes, n)]

    def predict(windows):  # (N, C, *patch), channels first as MONAI passes them
        total = 0
        for axes in flips:
            dims = [axis + 2 for axis in axes]
            flipped = torch.flip(windows, dims) if axes else windows
            out = torch.sigmoid(conv(flipped, weight, offset, padding=1))
            total = total + (torch.flip(out, dims) if axes else out)
        return total / len(flips)

    return predict


def main() -> None:
    import torch
    from monai.data.utils import compute_importance_map
    from monai.inferers import sliding_window_inference

    rng = np.random.default_rng(35)
    arrays = {}
    for name, (shape, patch, overlap, batch, mirror) in CASES.items():
        kernel, bias = toy_weights(len(shape))
        volume = rng.integers(0, 10, (*shape, CHANNELS_IN), dtype=np.uint8)
        inputs = torch.from_numpy(np.moveaxis(volume.astype(np.float32), -1, 0)[None])
        with torch.no_grad():
            output = sliding_window_inference(
                inputs,
                roi_size=patch,
                sw_batch_size=batch,
                predictor=_torch_predict(kernel, bias, mirror),
                overlap=overlap,
                mode="gaussian",
                sigma_scale=0.125,
                padding_mode="constant",
                cval=0.0,
            )
        arrays[f"{name}/input"] = volume
        arrays[f"{name}/output"] = np.moveaxis(output[0].numpy(), 0, -1).astype(np.float32)
        arrays[f"{name}/patch"] = np.asarray(patch)
        arrays[f"{name}/overlap"] = np.asarray(overlap)
        arrays[f"{name}/batch"] = np.asarray(batch)
        arrays[f"{name}/mirror"] = np.asarray(mirror, dtype=int)
        arrays[f"{name}/kernel"] = kernel
        arrays[f"{name}/bias"] = bias
    for patch in WEIGHT_PATCHES:
        weights = compute_importance_map(patch, mode="gaussian", sigma_scale=0.125)
        arrays["weights/" + "x".join(map(str, patch))] = weights.numpy().astype(np.float32)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(CASES)} cases)")


if __name__ == "__main__":
    main()
