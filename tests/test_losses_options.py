"""Loss options for several classes: include_background, class_weights, ignore_index and
regions, against numpy on real Figshare label maps, on whichever Keras backend is active."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from segkit import data, losses, masks
from segkit.cli import parse_pairs
from segkit.resize import resize_labels

pytestmark = pytest.mark.backend

TOL = {"rtol": 1e-5, "atol": 1e-5}
IGNORE = 255
REGIONS = [[1, 2, 3], [2]]  # any tumour; glioma


@pytest.fixture(scope="module")
def label_maps(figshare_256):
    """Six real slices, two of each tumour type, as 64x64 label maps (background + type),
    with a corner of each marked unlabelled (255)."""
    samples = data.find_samples(figshare_256)
    chosen = [s for label in (1, 2, 3) for s in [x for x in samples if x.label == label][:2]]
    labels = np.stack(
        [
            resize_labels(data.read_mask(s, num_classes=4, class_source="sample-label"), (64, 64))
            for s in chosen
        ]
    )
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    unlabelled = labels.copy()
    unlabelled[:, :16, :16] = IGNORE
    return labels, unlabelled


@pytest.fixture(scope="module")
def predictions(label_maps):
    """Imperfect softmax probabilities over the four classes, and their logits."""
    labels, _ = label_maps
    rng = np.random.default_rng(0)
    logits = 2.0 * np.eye(4, dtype=np.float32)[labels] + rng.normal(size=(*labels.shape, 4))
    logits = logits.astype(np.float32)
    exp = np.exp(logits - logits.max(-1, keepdims=True))
    return logits, (exp / exp.sum(-1, keepdims=True)).astype(np.float32)


def value(loss, y_true, y_pred):
    return float(keras.ops.convert_to_numpy(loss(y_true, y_pred)))


def dice_per_channel(y, p, smooth=1.0):
    """Pooled soft Dice loss of each channel: ``(C,)``."""
    axes = tuple(range(y.ndim - 1))
    return 1 - (2 * (y * p).sum(axes) + smooth) / (y.sum(axes) + p.sum(axes) + smooth)


def test_multiclass_dice_leaves_the_background_out_by_default(label_maps, predictions):
    labels, _ = label_maps
    _, probs = predictions
    per_class = dice_per_channel(np.eye(4)[labels], probs)
    default = losses.DiceLoss(mode="multiclass")
    assert default.include_background is False
    np.testing.assert_allclose(value(default, labels, probs), per_class[1:].mean(), **TOL)
    everything = losses.DiceLoss(mode="multiclass", include_background=True)
    np.testing.assert_allclose(value(everything, labels, probs), per_class.mean(), **TOL)


def test_multilabel_keeps_channel_zero_unless_told(label_maps, predictions):
    labels, _ = label_maps
    _, probs = predictions
    targets = masks.regions_from_labels(labels, [[1], [2], [3]]).astype(np.float32)
    sigmoid = probs[..., 1:]
    per_channel = dice_per_channel(targets, sigmoid)
    loss = losses.JaccardLoss(mode="multilabel", smooth=0.0)
    assert loss.include_background is True
    without = losses.DiceLoss(mode="multilabel", include_background=False)
    np.testing.assert_allclose(value(without, targets, sigmoid), per_channel[1:].mean(), **TOL)


def test_binary_ignores_include_background():
    rng = np.random.default_rng(2)
    y_true = (rng.random((2, 8, 8, 1)) > 0.5).astype(np.float32)
    y_pred = rng.random((2, 8, 8, 1)).astype(np.float32)
    for loss_class in (losses.DiceLoss, losses.TverskyLoss, losses.BCEDiceLoss):
        plain = value(loss_class(), y_true, y_pred)
        assert value(loss_class(include_background=False), y_true, y_pred) == plain


def test_class_weights_weigh_the_foreground_classes(label_maps, predictions):
    labels, _ = label_maps
    _, probs = predictions
    per_class = dice_per_channel(np.eye(4)[labels], probs)
    loss = losses.DiceLoss(mode="multiclass", class_weights=[5.0, 1.0, 2.0, 3.0])
    expected = (per_class[1:] * [1, 2, 3]).sum() / 6  # the background's weight goes unused
    np.testing.assert_allclose(value(loss, labels, probs), expected, **TOL)


def test_ignored_pixels_count_in_neither_dice_nor_cross_entropy(label_maps, predictions):
    labels, unlabelled = label_maps
    logits, probs = predictions
    kept = unlabelled != IGNORE
    onehot = np.eye(4)[labels] * kept[..., None]
    dice = dice_per_channel(onehot, probs * kept[..., None])[1:].mean()
    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    pixel_ce = -(np.eye(4)[labels] * log_softmax).sum(-1)
    ce = np.mean([pixel_ce[i][kept[i]].mean() for i in range(len(labels))])
    options = {"mode": "multiclass", "ignore_index": IGNORE}
    np.testing.assert_allclose(value(losses.DiceLoss(**options), unlabelled, probs), dice, **TOL)
    combined = losses.BCEDiceLoss(**options, from_logits=True, bce_weight=1.0, dice_weight=0.0)
    np.testing.assert_allclose(value(combined, unlabelled, logits), ce, **TOL)
    focal = losses.FocalLoss(**options, gamma=0.0, from_logits=True)
    np.testing.assert_allclose(value(focal, unlabelled, logits), ce, **TOL)


@pytest.mark.parametrize(
    "loss",
    [
        losses.DiceLoss(mode="multiclass", ignore_index=IGNORE),
        losses.TverskyLoss(mode="multiclass", ignore_index=IGNORE, per_image=True),
        losses.FocalLoss(mode="multiclass", ignore_index=IGNORE),
        losses.BCEDiceLoss(mode="multiclass", ignore_index=IGNORE),
        losses.BCEDiceLoss(mode="multilabel", regions=REGIONS, ignore_index=IGNORE),
    ],
    ids=lambda loss: f"{loss.name}-{loss.get_config()['mode']}",
)
def test_predictions_at_ignored_pixels_change_nothing(loss, label_maps, predictions):
    _, unlabelled = label_maps
    _, probs = predictions
    probs = probs[..., :2] if loss.get_config()["mode"] == "multilabel" else probs
    changed = probs.copy()
    changed[:, :16, :16] = np.roll(changed[:, :16, :16], 1, axis=-1)
    unchanged = value(loss, unlabelled, probs)
    assert value(loss, unlabelled, changed) == pytest.approx(unchanged, abs=1e-5)
    assert value(loss, unlabelled, probs[:, ::-1]) != pytest.approx(unchanged, abs=1e-5)


def test_regions_turn_a_label_map_into_one_target_per_region(label_maps, predictions):
    labels, _ = label_maps
    logits, _ = predictions
    region_logits = logits[..., :2]
    targets = masks.regions_from_labels(labels, REGIONS).astype(np.float32)
    for name in ("dice", "bce_dice", "focal", "tversky"):
        from_labels = losses.get(name, mode="multilabel", regions=REGIONS, from_logits=True)
        from_targets = losses.get(name, mode="multilabel", from_logits=True)
        np.testing.assert_allclose(
            value(from_labels, labels, region_logits),
            value(from_targets, targets, region_logits),
            **TOL,
        )


def test_bce_dice_in_multiclass_mode_is_cross_entropy_plus_dice(label_maps, predictions):
    labels, _ = label_maps
    _, probs = predictions
    ce = keras.losses.SparseCategoricalCrossentropy()(labels, probs)
    dice = losses.DiceLoss(mode="multiclass")(labels, probs)
    expected = 0.5 * float(keras.ops.convert_to_numpy(ce)) + 0.5 * float(dice)
    assert value(losses.get("bce_dice", mode="multiclass"), labels, probs) == pytest.approx(
        expected, abs=1e-5
    )


@pytest.mark.parametrize(
    "loss",
    [
        losses.DiceLoss(mode="multiclass", include_background=True, ignore_index=IGNORE),
        losses.JaccardLoss(mode="multilabel", regions=REGIONS, include_background=False),
        losses.FocalTverskyLoss(mode="multiclass", class_weights=[0, 1, 1, 2]),
        losses.FocalLoss(mode="multilabel", regions=REGIONS, ignore_index=IGNORE),
        losses.BCEDiceLoss(mode="multilabel", regions=REGIONS, ignore_index=IGNORE),
    ],
    ids=lambda loss: loss.name,
)
def test_options_round_trip_get_config_and_saving(loss, tmp_path):
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert restored.get_config() == loss.get_config()
    channels = 2 if loss.get_config()["mode"] == "multilabel" else 4
    model = keras.Sequential([keras.Input((8, 8, channels)), keras.layers.Softmax()])
    model.compile(optimizer="adam", loss=loss)
    model.save(tmp_path / "model.keras")
    assert keras.saving.load_model(tmp_path / "model.keras").loss.get_config() == loss.get_config()


def test_command_line_loss_arguments_reach_the_options():
    pairs = ["include_background=true", "ignore_index=255", "class_weights=[0, 1, 2, 2]"]
    config = losses.get("bce_dice", mode="multiclass", **parse_pairs(pairs, "--loss-arg"))
    config = config.get_config()
    assert config["include_background"] is True and config["ignore_index"] == 255
    assert config["class_weights"] == [0.0, 1.0, 2.0, 2.0]


def test_options_that_cannot_apply_are_refused():
    with pytest.raises(ValueError, match="regions need mode='multilabel'"):
        losses.DiceLoss(mode="multiclass", regions=REGIONS)
    with pytest.raises(ValueError, match="each region must hold distinct labels of 1 or more"):
        losses.DiceLoss(mode="multilabel", regions=[[0, 1]])
    with pytest.raises(ValueError, match="2 regions for y_pred of 3 channels"):
        losses.DiceLoss(mode="multilabel", regions=REGIONS)(
            np.zeros((1, 4, 4)), np.zeros((1, 4, 4, 3))
        )
    with pytest.raises(ValueError, match="class_weights has 3 entries for 4 channels"):
        losses.DiceLoss(mode="multiclass", class_weights=[1, 1, 1])(
            np.zeros((1, 4, 4)), np.full((1, 4, 4, 4), 0.25)
        )
    with pytest.raises(ValueError, match="leaves no channel of 1 to score"):
        losses.DiceLoss(mode="multilabel", include_background=False)(
            np.zeros((1, 4, 4, 1)), np.zeros((1, 4, 4, 1))
        )
