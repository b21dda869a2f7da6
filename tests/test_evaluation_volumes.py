"""3-D scores in real units: segkit.evaluation on LGG tumour volumes against stored MONAI numbers
and against references computed here, independently, with SciPy."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import ndimage

from segkit import evaluation, masks

VECTORS = Path(__file__).parent / "vectors"
VOLUME_VECTORS = json.loads((VECTORS / "volume_surface_distances.json").read_text())["pairs"]


def decode(pair):
    """The stored ``(pred, true)`` volumes: run-length codes of their ``(K*H, W)`` rows."""
    shape = pair["shape"]
    rows = (shape[0] * shape[1], shape[2])
    return tuple(
        masks.rle_decode(pair[key], rows).astype(bool).reshape(shape)
        for key in ("pred_rle", "true_rle")
    )


def monai_style_distances(pred, true, spacing):
    """MONAI's recipe written out: edges are the mask minus its erosion (SciPy's default cross),
    and each edge voxel's distance is read from the Euclidean distance transform of everything
    but the other mask's edges, over the whole volume."""
    pred_edges = pred ^ ndimage.binary_erosion(pred)
    true_edges = true ^ ndimage.binary_erosion(true)
    to_true = ndimage.distance_transform_edt(~true_edges, sampling=spacing)
    to_pred = ndimage.distance_transform_edt(~pred_edges, sampling=spacing)
    return to_true[pred_edges], to_pred[true_edges]


def brute_force_distances(pred, true, spacing):
    """Surfaces by checking each voxel's 6 neighbours; distances between all point pairs."""

    def surface_points(mask):
        padded = np.pad(mask, 1)
        inner = padded[1:-1, 1:-1, 1:-1]
        all_in = (
            padded[:-2, 1:-1, 1:-1]
            & padded[2:, 1:-1, 1:-1]
            & padded[1:-1, :-2, 1:-1]
            & padded[1:-1, 2:, 1:-1]
            & padded[1:-1, 1:-1, :-2]
            & padded[1:-1, 1:-1, 2:]
        )
        return np.argwhere(inner & ~all_in) * np.asarray(spacing)

    pred_points, true_points = surface_points(pred), surface_points(true)
    pairwise = np.sqrt(((pred_points[:, None, :] - true_points[None, :, :]) ** 2).sum(-1))
    return pairwise.min(axis=1), pairwise.min(axis=0)


def hd95_assd(pred_to_true, true_to_pred):
    hd95 = max(np.percentile(pred_to_true, 95), np.percentile(true_to_pred, 95))
    return hd95, np.concatenate((pred_to_true, true_to_pred)).mean()


@pytest.mark.parametrize(
    "pair", VOLUME_VECTORS, ids=lambda p: f"{p['patient'][5:12]}-{p['change']}"
)
def test_volumes_match_monai_and_the_scipy_reference(pair):
    pred, true = decode(pair)
    spacing = pair["spacing"]
    scores = evaluation.score(pred, true, spacing=spacing)
    np.testing.assert_allclose(scores["dice"], pair["monai_dice"], rtol=1e-6)
    if not pred.any():  # MONAI: NaN HD95 and infinite ASSD; here NaN for both
        assert math.isnan(scores["hd95"]) and math.isnan(pair["monai_hd95"])
        assert math.isnan(scores["assd"]) and math.isinf(pair["monai_assd"])
        return
    # MONAI computes in float32.
    np.testing.assert_allclose(scores["hd95"], pair["monai_hd95"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(scores["assd"], pair["monai_assd"], rtol=1e-5, atol=1e-5)
    reference = hd95_assd(*monai_style_distances(pred, true, spacing))
    np.testing.assert_allclose((scores["hd95"], scores["assd"]), reference, rtol=1e-9)


def test_volume_vectors_come_from_the_real_masks(lgg_root, monkeypatch):
    spec = importlib.util.spec_from_file_location(
        "make_volume_vectors", VECTORS / "make_volume_vectors.py"
    )
    make_vectors = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_vectors)
    monkeypatch.setattr(make_vectors, "LGG", lgg_root)
    for pair in VOLUME_VECTORS[:3]:
        true = make_vectors.load(pair["patient"])
        pred = make_vectors.change(true, pair["change"])
        assert make_vectors.encode(true) == pair["true_rle"]
        assert make_vectors.encode(pred) == pair["pred_rle"]


small_volumes = hnp.arrays(bool, (4, 6, 5), elements=st.booleans())
spacings = st.tuples(st.floats(0.25, 5.0), st.floats(0.25, 3.0), st.floats(0.25, 3.0))


@settings(max_examples=30, deadline=None)
@given(small_volumes, small_volumes, spacings)
def test_volumes_match_brute_force(pred, true, spacing):
    scores = evaluation.score(pred, true, spacing=spacing)
    if pred.any() and true.any():
        hd95, assd = hd95_assd(*brute_force_distances(pred, true, spacing))
        np.testing.assert_allclose(scores["hd95"], hd95, rtol=1e-9)
        np.testing.assert_allclose(scores["assd"], assd, rtol=1e-9)
        assert evaluation.hd95(pred, true, spacing) == scores["hd95"]
        assert evaluation.assd(pred, true, spacing) == scores["assd"]


def test_default_spacing_is_one_along_every_axis():
    pair = VOLUME_VECTORS[0]
    pred, true = decode(pair)
    unit = evaluation.score(pred, true, spacing=(1.0, 1.0, 1.0))
    assert evaluation.score(pred, true) == unit  # 3-D masks need no spacing
    assert evaluation.hd95(pred, true) == unit["hd95"] == evaluation.hd95(pred, true, 1.0)
    assert evaluation.assd(pred, true) == unit["assd"]
    pred_to_true, true_to_pred = evaluation.surface_distances(pred, true)
    np.testing.assert_array_equal(
        pred_to_true, evaluation.surface_distances(pred, true, (1, 1, 1))[0]
    )
    # Real units: the slices 3 mm apart push the distances up.
    assert evaluation.hd95(pred, true, spacing=pair["spacing"]) > unit["hd95"]
    flat = evaluation.score(pred[0], true[0])  # and 2-D still
    assert flat == evaluation.score(pred[0], true[0], spacing=(1.0, 1.0))


@pytest.mark.parametrize("shape", [(6, 6), (3, 6, 6)], ids=["2-D", "3-D"])
def test_one_empty_mask_rule_for_every_score(shape):
    empty = np.zeros(shape, bool)
    lesion = empty.copy()
    lesion[..., 2:4, 2:4] = True

    both = evaluation.score(empty, empty)
    assert both["dice"] == 1.0
    assert both["hd95"] == evaluation.hd95(empty, empty) == 0.0
    assert both["assd"] == evaluation.assd(empty, empty) == 0.0
    skipped = evaluation.score(empty, empty, empty="skip")
    assert math.isnan(skipped["dice"]) and math.isnan(skipped["hd95"])
    assert math.isnan(evaluation.hd95(empty, empty, empty="skip"))
    assert math.isnan(evaluation.assd(empty, empty, empty="skip"))
    for pred, true in ((empty, lesion), (lesion, empty)):
        one = evaluation.score(pred, true)
        assert one["dice"] == 0.0 and math.isnan(one["hd95"]) and math.isnan(one["assd"])
        assert math.isnan(evaluation.hd95(pred, true)) and math.isnan(evaluation.assd(pred, true))
        assert math.isnan(evaluation.hd95(pred, true, empty="skip"))


@pytest.mark.parametrize("function", [evaluation.score, evaluation.hd95, evaluation.assd])
def test_bad_input_is_refused_even_on_empty_masks(function):
    empty = np.zeros((3, 6, 6), bool)
    with pytest.raises(ValueError, match="spacing must be 3 positive sizes"):
        function(empty, empty, spacing=(1.0, 1.0))
    with pytest.raises(ValueError, match="empty must be one of"):
        function(empty, empty, empty="zero")
