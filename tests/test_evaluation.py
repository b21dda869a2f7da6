"""segkit.evaluation against stored MONAI numbers and a brute-force textbook version."""

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

from segkit import evaluation, masks

VECTORS = Path(__file__).parent / "vectors"
SURFACE_VECTORS = json.loads((VECTORS / "surface_distances.json").read_text())["pairs"]


def brute_force_surface_distances(pred, true, spacing):
    """Surfaces by checking each pixel's 4 neighbours; distances between all point pairs."""

    def surface_points(mask):
        padded = np.pad(mask, 1)
        inner = padded[1:-1, 1:-1]
        all_neighbours_in = (
            padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
        )
        return np.argwhere(inner & ~all_neighbours_in) * np.asarray(spacing)

    pred_points, true_points = surface_points(pred), surface_points(true)
    pairwise = np.sqrt(((pred_points[:, None, :] - true_points[None, :, :]) ** 2).sum(-1))
    return pairwise.min(axis=1), pairwise.min(axis=0)


def brute_force_hd95_assd(pred, true, spacing):
    pred_to_true, true_to_pred = brute_force_surface_distances(pred, true, spacing)
    hd95 = max(np.percentile(pred_to_true, 95), np.percentile(true_to_pred, 95))
    return hd95, np.concatenate((pred_to_true, true_to_pred)).mean()


def decode(pair):
    shape = pair["shape"]
    return (
        masks.rle_decode(pair["pred_rle"], shape).astype(bool),
        masks.rle_decode(pair["true_rle"], shape).astype(bool),
    )


@pytest.mark.parametrize("pair", SURFACE_VECTORS, ids=lambda p: f"{p['true_id']}-{p['change']}")
def test_matches_monai_vectors(pair):
    pred, true = decode(pair)
    scores = evaluation.score(pred, true, spacing=pair["spacing"])
    np.testing.assert_allclose(scores["dice"], pair["monai_dice"], rtol=1e-6)
    if pred.any() and true.any():
        # MONAI computes in float32.
        np.testing.assert_allclose(scores["hd95"], pair["monai_hd95"], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(scores["assd"], pair["monai_assd"], rtol=1e-5, atol=1e-5)
    else:
        # One mask empty: NaN here; MONAI gives NaN for HD95 and inf for ASSD.
        assert math.isnan(scores["hd95"]) and math.isnan(pair["monai_hd95"])
        assert math.isnan(scores["assd"]) and math.isinf(pair["monai_assd"])


@pytest.mark.parametrize(
    "pair",
    [p for p in SURFACE_VECTORS if "medpy_hd95" in p][:6],
    ids=lambda p: f"{p['true_id']}-{p['change']}",
)
def test_medpy_hd95_is_the_percentile_of_the_union(pair):
    """MedPy takes one percentile over both directions together; MONAI (and segkit) the max
    of the two directed percentiles. Both agree on ASSD."""
    pred, true = decode(pair)
    pred_to_true, true_to_pred = evaluation.surface_distances(pred, true, pair["spacing"])
    union = np.concatenate((pred_to_true, true_to_pred))
    np.testing.assert_allclose(np.percentile(union, 95), pair["medpy_hd95"], rtol=1e-9)
    np.testing.assert_allclose(union.mean(), pair["medpy_assd"], rtol=1e-9)
    assert evaluation.hd95(pred, true, pair["spacing"]) >= pair["medpy_hd95"] - 1e-9


def test_vectors_come_from_the_real_masks(figshare_256, monkeypatch):
    spec = importlib.util.spec_from_file_location(
        "make_vectors", VECTORS / "make_surface_vectors.py"
    )
    make_vectors = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_vectors)
    monkeypatch.setattr(make_vectors, "MASKS", figshare_256 / "masks")
    for pair in SURFACE_VECTORS[:5]:
        true = make_vectors.load(pair["true_id"])
        pred = make_vectors.change(true, pair["change"])
        assert masks.rle_encode(true) == pair["true_rle"]
        assert masks.rle_encode(pred) == pair["pred_rle"]


small_masks = hnp.arrays(bool, (9, 11), elements=st.booleans())
spacings = st.tuples(st.floats(0.25, 3.0), st.floats(0.25, 3.0))


@settings(max_examples=30, deadline=None)
@given(small_masks, small_masks, spacings)
def test_matches_brute_force(pred, true, spacing):
    scores = evaluation.score(pred, true, spacing=spacing)
    if pred.any() and true.any():
        hd95, assd = brute_force_hd95_assd(pred, true, spacing)
        np.testing.assert_allclose(scores["hd95"], hd95, rtol=1e-9)
        np.testing.assert_allclose(scores["assd"], assd, rtol=1e-9)
    tp, fp, fn = (pred & true).sum(), (pred & ~true).sum(), (~pred & true).sum()
    assert (scores["tp"], scores["fp"], scores["fn"]) == (tp, fp, fn)
    assert scores["tp"] + scores["fp"] + scores["fn"] + scores["tn"] == pred.size
    if tp + fp + fn:
        np.testing.assert_allclose(scores["dice"], 2 * tp / (2 * tp + fp + fn))
        np.testing.assert_allclose(scores["iou"], tp / (tp + fp + fn))


def test_known_example():
    true = np.zeros((8, 8), bool)
    true[2:5, 2:5] = True
    pred = np.roll(true, 2, axis=1)  # the square moved two columns right
    scores = evaluation.score(pred, true)
    assert (scores["tp"], scores["fp"], scores["fn"], scores["tn"]) == (3, 6, 6, 49)
    assert scores["dice"] == pytest.approx(6 / 18)
    assert scores["precision"] == scores["recall"] == pytest.approx(1 / 3)
    assert scores["specificity"] == pytest.approx(49 / 55)
    assert scores["hd95"] == pytest.approx(2.0)
    # Doubling the pixel width along x doubles every distance here.
    assert evaluation.hd95(pred, true, spacing=(1.0, 2.0)) == pytest.approx(4.0)


def test_spacing_scales_isotropically():
    rng = np.random.default_rng(0)
    pred, true = rng.random((2, 12, 12)) > 0.6
    base = evaluation.score(pred, true)
    scaled = evaluation.score(pred, true, spacing=0.5)
    assert scaled["hd95"] == pytest.approx(base["hd95"] / 2)
    assert scaled["assd"] == pytest.approx(base["assd"] / 2)


def test_empty_mask_policy():
    empty = np.zeros((6, 6), np.uint8)
    lesion = empty.copy()
    lesion[2:4, 2:4] = 1

    both = evaluation.score(empty, empty)
    assert [both[k] for k in ("dice", "iou", "precision", "recall", "specificity")] == [1.0] * 5
    assert both["hd95"] == both["assd"] == 0.0

    skipped = evaluation.score(empty, empty, empty="skip")
    for key in ("dice", "iou", "precision", "recall", "hd95", "assd"):
        assert math.isnan(skipped[key])

    for pred, true in ((empty, lesion), (lesion, empty)):
        one = evaluation.score(pred, true)
        assert [one[k] for k in ("dice", "iou", "precision", "recall")] == [0.0] * 4
        assert math.isnan(one["hd95"]) and math.isnan(one["assd"])
        assert math.isnan(evaluation.hd95(pred, true))
    assert evaluation.assd(empty, empty) == 0.0


def test_volumes():
    true = np.zeros((4, 6, 6), bool)
    true[1:3, 1:4, 1:4] = True
    pred = np.roll(true, 1, axis=0)
    scores = evaluation.score(pred, true, spacing=(3.0, 1.0, 1.0))
    assert scores["hd95"] == pytest.approx(3.0)


def test_summarize():
    square = np.zeros((6, 6), np.uint8)
    square[1:3, 1:3] = 1
    empty = np.zeros((6, 6), np.uint8)
    scores = [
        evaluation.score(square, square),  # perfect: 4 tp
        evaluation.score(empty, square),  # missed: 4 fn
        evaluation.score(empty, empty),  # both empty
    ]
    summary = evaluation.summarize(scores)
    assert summary["images"] == 3
    assert summary["dice"] == {
        "mean": pytest.approx(2 / 3),
        "median": 1.0,
        "std": pytest.approx(np.std([1, 0, 1])),
        "nan": 0,
    }
    assert summary["hd95"]["nan"] == 1
    assert summary["hd95"]["mean"] == 0.0
    assert summary["dice_pooled"] == pytest.approx(8 / 12)
    assert summary["iou_pooled"] == pytest.approx(4 / 8)

    skipped = evaluation.summarize([evaluation.score(empty, empty, empty="skip")])
    assert math.isnan(skipped["dice"]["mean"]) and skipped["dice"]["nan"] == 1
    assert skipped["dice_pooled"] == 1.0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: evaluation.score(np.full((3, 3), 0.5), np.zeros((3, 3))), "pred must be binary"),
        (lambda: evaluation.score(np.zeros((3, 3)), np.full((3, 3), 2)), "true must be binary"),
        (lambda: evaluation.score(np.zeros((3, 3)), np.zeros((3, 4))), "shape"),
        (lambda: evaluation.score(np.zeros(3), np.zeros(3)), "pred must have 2 or 3"),
        (
            lambda: evaluation.score(np.zeros((3, 3)), np.zeros((3, 3)), spacing=(1, 2, 3)),
            "spacing",
        ),
        (lambda: evaluation.score(np.zeros((3, 3)), np.zeros((3, 3)), spacing=(1, -1)), "spacing"),
        (lambda: evaluation.score(np.zeros((3, 3)), np.zeros((3, 3)), empty="zero"), "empty"),
        (lambda: evaluation.summarize([{"dice": 1.0}]), "tp"),
    ],
)
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()
