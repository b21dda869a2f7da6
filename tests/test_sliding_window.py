"""Sliding-window inference equals MONAI's ``sliding_window_inference`` on stored vectors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from segkit.sliding_window import MIN_WEIGHT, gaussian_weights, sliding_window, window_starts

VECTORS = Path(__file__).parent / "vectors"
STORED = np.load(VECTORS / "sliding_window.npz")

_spec = importlib.util.spec_from_file_location(
    "make_sliding_window_vectors", VECTORS / "make_sliding_window_vectors.py"
)
make_vectors = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_vectors)


def _case(name):
    kernel, bias = STORED[f"{name}/kernel"], STORED[f"{name}/bias"]
    return dict(
        predict=lambda windows: make_vectors.toy_predict(windows, kernel, bias),
        volume=STORED[f"{name}/input"].astype(np.float32),
        patch_size=tuple(int(p) for p in STORED[f"{name}/patch"]),
        overlap=float(STORED[f"{name}/overlap"]),
        batch_size=int(STORED[f"{name}/batch"]),
        mirror_axes=tuple(int(a) for a in STORED[f"{name}/mirror"]),
    )


@pytest.mark.parametrize("name", list(make_vectors.CASES))
def test_equals_monai(name):
    case = _case(name)
    expected = STORED[f"{name}/output"]
    got = sliding_window(
        case["predict"],
        case["volume"],
        case["patch_size"],
        overlap=case["overlap"],
        batch_size=case["batch_size"],
        mirror_axes=case["mirror_axes"],
    )
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_the_vectors_tell_blends_apart():
    # Uniform weights, another overlap or no mirroring must miss the vectors: the comparison
    # above can fail.
    case = _case("overlap_half")
    expected = STORED["overlap_half/output"]
    flat = sliding_window(**{**case, "sigma_scale": 1e6})  # a Gaussian this wide is flat
    other_overlap = sliding_window(**{**case, "overlap": 0.25})
    unmirrored = sliding_window(**_case("mirror") | {"mirror_axes": ()})
    assert np.abs(flat - expected).max() > 1e-3
    assert np.abs(other_overlap - expected).max() > 1e-3
    assert np.abs(unmirrored - STORED["mirror/output"]).max() > 1e-3


def test_batch_size_does_not_change_the_result():
    case = _case("overlap_half")
    one = sliding_window(**{**case, "batch_size": 1})
    many = sliding_window(**{**case, "batch_size": 64})
    np.testing.assert_allclose(one, many, atol=1e-6)


@pytest.mark.parametrize("patch", [(8, 8, 6), (7, 9, 5), (16, 16, 16), (12, 5)])
def test_gaussian_weights_equal_monai(patch):
    expected = STORED["weights/" + "x".join(map(str, patch))]
    got = gaussian_weights(patch)
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)


def test_gaussian_weights_shape_and_clipping():
    weights = gaussian_weights((16, 16, 16))
    assert weights.shape == (16, 16, 16)
    # Symmetric, largest in the middle, a corner raised to the floor (exp(-8)^3 is far below).
    np.testing.assert_allclose(weights, weights[::-1, ::-1, ::-1])
    assert weights.argmax() == np.ravel_multi_index((7, 7, 7), weights.shape)
    assert weights[0, 0, 0] == pytest.approx(MIN_WEIGHT)
    assert weights.min() == pytest.approx(MIN_WEIGHT)
    # Along one axis through the centre, sigma is an eighth of the patch.
    odd = gaussian_weights((9,), sigma_scale=0.125)
    assert odd[4] == 1 and odd[5] == pytest.approx(np.exp(-1 / (2 * (9 / 8) ** 2)), rel=1e-6)


def test_window_starts():
    assert window_starts(16, 8, 0.5) == [0, 4, 8]
    assert window_starts(19, 8, 0.5) == [0, 4, 8, 11]  # the last one ends at the edge
    assert window_starts(8, 8, 0.5) == [0]
    assert window_starts(10, 7, 0.25) == [0, 3]  # int(7 * 0.75) = 5, moved back to 3
    with pytest.raises(ValueError):
        window_starts(5, 8, 0.5)


def test_progress_counts_windows():
    case = _case("overlap_half")
    calls = []
    sliding_window(**case, progress=lambda done, total: calls.append((done, total)))
    total = len(window_starts(16, 8, 0.5)) * len(window_starts(19, 8, 0.5))
    total *= len(window_starts(10, 6, 0.5))
    assert calls[-1] == (total, total)
    assert [done for done, _ in calls] == sorted({done for done, _ in calls})
    assert len(calls) == -(-total // case["batch_size"])


def test_small_volume_is_padded_and_cropped_back():
    seen = []

    def predict(windows):
        seen.append(windows.shape)
        return windows[..., :1] * 2

    volume = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5, 1)
    out = sliding_window(predict, volume, (8, 8, 8))
    assert seen == [(1, 8, 8, 8, 1)]
    np.testing.assert_allclose(out, volume * 2, rtol=1e-6)


def test_identity_is_kept_whatever_the_overlap():
    # A network that returns its input: a weighted mean of equal values is that value.
    volume = np.random.default_rng(0).random((20, 17, 3)).astype(np.float32)
    out = sliding_window(lambda w: w, volume, (8, 6), overlap=0.75, mirror_axes=(0, 1))
    np.testing.assert_allclose(out, volume, rtol=1e-5)


def test_bad_arguments():
    volume = np.zeros((16, 16, 16, 1), np.float32)
    with pytest.raises(ValueError, match="spatial axes"):
        sliding_window(lambda w: w, volume[..., 0], (8, 8, 8))
    with pytest.raises(ValueError, match="overlap"):
        sliding_window(lambda w: w, volume, (8, 8, 8), overlap=1.0)
    with pytest.raises(ValueError, match="mirror axes"):
        sliding_window(lambda w: w, volume, (8, 8, 8), mirror_axes=(3,))
    with pytest.raises(ValueError, match="predict returned"):
        sliding_window(lambda w: w[:, :4], volume, (8, 8, 8))


def test_memory_is_the_output_and_a_few_windows():
    # Peak numpy allocation while stitching: the output, one weight per voxel, and about two
    # batches of windows (in and out). A second volume-sized array would break the bound.
    import tracemalloc

    channels, classes, patch, batch = 4, 3, (16, 16, 16), 2
    volume = np.random.default_rng(0).random((48, 48, 48, channels), dtype=np.float32)

    def predict(windows):
        return np.repeat(windows[..., :1], classes, axis=-1)

    tracemalloc.start()
    try:
        out = sliding_window(predict, volume, patch, batch_size=batch)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    weight_sum = out.nbytes // classes
    windows = batch * np.prod(patch) * (channels + classes) * 4
    assert peak <= out.nbytes + weight_sum + 3 * windows
