"""Sliding-window inference: what stitching costs beside the network's own time.

One run times, on the same volume and windows: the network alone on every batch of windows
(the windows cut beforehand), and `segkit.sliding_window.sliding_window` around the same
network (cutting, Gaussian weighting, stitching, normalising). The stitching overhead is
``(sliding window - network) / sliding window``, recorded in ``extra_info``; the aim is at most
10%. The network is a small Keras 3-D convolution stack (segkit's own 3-D networks do not
exist yet), so this is an upper bound of the share: a real 3-D U-Net takes longer per window
while stitching costs the same.

`test_against_monai` runs one PyTorch network of the same layers through MONAI's
``sliding_window_inference`` (``mode="gaussian"``, the same patch, overlap and windows per
batch) and through segkit's (channels moved last and back around the network), and records
segkit's time as a ratio of MONAI's. It needs MONAI (``pip install monai``), which segkit does
not depend on, and is skipped without it.

Run: ``pytest benchmarks/test_bench_sliding_window.py -s``.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from segkit.sliding_window import sliding_window, window_starts

VOLUME = (96, 96, 48)
PATCH = (32, 32, 32)
BATCH = 4


def _network():
    import keras

    inputs = keras.Input((*PATCH, 1))
    x = keras.layers.Conv3D(16, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv3D(16, 3, padding="same", activation="relu")(x)
    outputs = keras.layers.Conv3D(2, 1, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def _best(function, rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


@pytest.mark.slow
def test_stitching_overhead(benchmark):
    model = _network()
    volume = np.random.default_rng(0).random((*VOLUME, 1), dtype=np.float32)

    def predict(windows):
        return np.asarray(model.predict_on_batch(windows))

    starts = [window_starts(s, p, 0.5) for s, p in zip(VOLUME, PATCH, strict=True)]
    corners = list(itertools.product(*starts))
    batches = [
        np.stack(
            [volume[tuple(slice(c, c + p) for c, p in zip(corner, PATCH))] for corner in group]
        )
        for group in (corners[i : i + BATCH] for i in range(0, len(corners), BATCH))
    ]
    predict(batches[0])  # warm up: tracing, allocation

    network = _best(lambda: [predict(b) for b in batches])
    whole = _best(lambda: sliding_window(predict, volume, PATCH, batch_size=BATCH))
    overhead = (whole - network) / whole
    benchmark.extra_info.update(
        windows=len(corners),
        network_s=round(network, 3),
        sliding_window_s=round(whole, 3),
        stitching_share=round(overhead, 3),
    )
    print(
        f"\n{len(corners)} windows: network {network:.2f} s, sliding window {whole:.2f} s, "
        f"stitching {overhead:.1%} of the total"
    )
    benchmark.pedantic(
        sliding_window, args=(predict, volume, PATCH), kwargs={"batch_size": BATCH}, rounds=1
    )


@pytest.mark.slow
def test_against_monai(benchmark):
    torch = pytest.importorskip("torch")
    inferers = pytest.importorskip("monai.inferers")
    torch.manual_seed(0)
    network = torch.nn.Sequential(
        torch.nn.Conv3d(1, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv3d(16, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv3d(16, 2, 1),
        torch.nn.Softmax(dim=1),
    ).eval()
    volume = np.random.default_rng(0).random((*VOLUME, 1), dtype=np.float32)
    channels_first = torch.from_numpy(np.moveaxis(volume, -1, 0)[None].copy())

    def predict(windows):  # channels last in and out, as segkit passes them
        with torch.no_grad():
            out = network(torch.from_numpy(np.moveaxis(windows, -1, 1).copy()))
        return np.moveaxis(out.numpy(), 1, -1)

    def monai():
        with torch.no_grad():
            return inferers.sliding_window_inference(
                channels_first, PATCH, BATCH, network, overlap=0.5, mode="gaussian"
            )

    def segkit():
        return sliding_window(predict, volume, PATCH, batch_size=BATCH)

    np.testing.assert_allclose(segkit(), np.moveaxis(monai()[0].numpy(), 0, -1), atol=1e-5, rtol=0)
    theirs, ours = _best(monai), _best(segkit)
    benchmark.extra_info.update(
        monai_s=round(theirs, 3), segkit_s=round(ours, 3), segkit_vs_monai=round(ours / theirs, 3)
    )
    print(f"\nMONAI {theirs:.2f} s, segkit {ours:.2f} s: segkit takes {ours / theirs:.2f}x")
    benchmark.pedantic(segkit, rounds=1)
