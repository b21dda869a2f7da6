"""segkit.losses against numpy formulas, on whichever Keras backend is active."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from segkit import losses

pytestmark = pytest.mark.backend

TOL = {"rtol": 1e-5, "atol": 1e-5}


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.fixture
def binary_batch():
    """Three 6x5 images: logits, their probabilities and masks (the last one empty)."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 6, 5, 1)).astype(np.float32) * 2
    y_true = (rng.random((3, 6, 5, 1)) > 0.6).astype(np.float32)
    y_true[2] = 0
    return y_true, logits, _sigmoid(logits).astype(np.float32)


@pytest.fixture
def multiclass_batch():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 4, 5, 3)).astype(np.float32)
    labels = rng.integers(0, 3, size=(2, 4, 5))
    return labels, logits, _softmax(logits).astype(np.float32)


def value(loss, y_true, y_pred):
    return keras.ops.convert_to_numpy(loss(y_true, y_pred))


def numpy_dice_loss(y, p, smooth, per_image):
    axes = (1, 2) if per_image else (0, 1, 2)
    score = (2 * (y * p).sum(axes) + smooth) / np.maximum(y.sum(axes) + p.sum(axes) + smooth, 1e-7)
    return (1 - score).mean()


def test_notebook_dice_loss_is_reproduced(binary_batch):
    y, _, p = binary_batch
    notebook = 1 - (2 * np.sum(y * p) + 1) / (np.sum(y) + np.sum(p) + 1)
    np.testing.assert_allclose(
        value(losses.DiceLoss(smooth=1.0, per_image=False), y, p), notebook, **TOL
    )
    # Same from logits: the sigmoid is applied inside.
    _, logits, _ = binary_batch
    np.testing.assert_allclose(
        value(losses.DiceLoss(per_image=False, from_logits=True), y, logits), notebook, **TOL
    )


@pytest.mark.parametrize("per_image", [True, False])
@pytest.mark.parametrize("smooth", [0.0, 1.0])
def test_dice_loss_matches_numpy(binary_batch, per_image, smooth):
    y, _, p = binary_batch
    got = value(losses.DiceLoss(smooth=smooth, per_image=per_image), y, p)
    np.testing.assert_allclose(got, numpy_dice_loss(y, p, smooth, per_image), **TOL)


def test_dice_loss_accepts_masks_without_channel_axis(binary_batch):
    y, _, p = binary_batch
    loss = losses.DiceLoss()
    np.testing.assert_allclose(value(loss, y[..., 0], p), value(loss, y, p), **TOL)


def test_multiclass_labels_and_one_hot_agree(multiclass_batch):
    labels, logits, probs = multiclass_batch
    onehot = np.eye(3, dtype=np.float32)[labels]
    loss = losses.DiceLoss(mode="multiclass", from_logits=True, per_image=True)
    expected = numpy_dice_loss(onehot, probs, 1.0, per_image=True)
    for y_true in (labels, labels[..., None], onehot):
        np.testing.assert_allclose(value(loss, y_true, logits), expected, **TOL)


def test_class_weights(multiclass_batch):
    labels, _, probs = multiclass_batch
    onehot = np.eye(3, dtype=np.float32)[labels]
    per_class = 1 - (2 * (onehot * probs).sum((0, 1, 2)) + 1) / (
        onehot.sum((0, 1, 2)) + probs.sum((0, 1, 2)) + 1
    )
    weights = [0.0, 1.0, 3.0]
    loss = losses.DiceLoss(mode="multiclass", class_weights=weights)
    np.testing.assert_allclose(value(loss, labels, probs), (per_class * weights).sum() / 4, **TOL)


def test_jaccard_and_tversky_match_numpy(binary_batch):
    y, _, p = binary_batch
    axes = (1, 2)
    tp, fp, fn = (y * p).sum(axes), ((1 - y) * p).sum(axes), (y * (1 - p)).sum(axes)
    jaccard = 1 - (tp + 1) / (tp + fp + fn + 1)
    tversky = 1 - (tp + 1) / (tp + 0.3 * fp + 0.7 * fn + 1)
    np.testing.assert_allclose(
        value(losses.JaccardLoss(per_image=True), y, p), jaccard.mean(), **TOL
    )
    kwargs = {"alpha": 0.3, "beta": 0.7, "per_image": True}
    np.testing.assert_allclose(value(losses.TverskyLoss(**kwargs), y, p), tversky.mean(), **TOL)
    np.testing.assert_allclose(
        value(losses.FocalTverskyLoss(gamma=0.75, **kwargs), y, p),
        (tversky**0.75).mean(),
        **TOL,
    )


def test_tversky_with_half_weights_is_dice(binary_batch):
    y, _, p = binary_batch
    # Equal without smoothing; smooth enters the two formulas with different weights.
    tversky = losses.TverskyLoss(alpha=0.5, beta=0.5, smooth=0.0)
    np.testing.assert_allclose(
        value(tversky, y, p), value(losses.DiceLoss(smooth=0.0), y, p), **TOL
    )


@pytest.mark.parametrize("from_logits", [True, False])
def test_focal_loss_matches_numpy(binary_batch, from_logits):
    y, logits, p = binary_batch
    prob_true = np.where(y == 1, p, 1 - p)
    alpha_t = np.where(y == 1, 0.25, 0.75)
    expected = (-alpha_t * (1 - prob_true) ** 2 * np.log(prob_true)).mean()
    loss = losses.FocalLoss(gamma=2.0, alpha=0.25, from_logits=from_logits)
    np.testing.assert_allclose(value(loss, y, logits if from_logits else p), expected, **TOL)


def test_focal_loss_multiclass_and_gamma_zero_is_cross_entropy(multiclass_batch):
    labels, logits, probs = multiclass_batch
    prob_true = np.take_along_axis(probs, labels[..., None], axis=-1)
    expected = (-((1 - prob_true) ** 2) * np.log(prob_true)).mean()
    loss = losses.FocalLoss(mode="multiclass", from_logits=True)
    np.testing.assert_allclose(value(loss, labels, logits), expected, **TOL)
    plain = losses.FocalLoss(mode="multiclass", gamma=0.0, from_logits=True)
    np.testing.assert_allclose(value(plain, labels, logits), -np.log(prob_true).mean(), **TOL)


def test_bce_dice_loss_matches_numpy(binary_batch):
    y, logits, p = binary_batch
    bce = -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean()
    expected = 0.3 * bce + 0.7 * numpy_dice_loss(y, p, 1.0, per_image=False)
    loss = losses.BCEDiceLoss(bce_weight=0.3, dice_weight=0.7, from_logits=True)
    np.testing.assert_allclose(value(loss, y, logits), expected, **TOL)


def test_saturated_logits_give_exact_losses():
    # Both pixels are confidently wrong: sigmoid(-200) is 0 and sigmoid(200) is 1 in float32.
    y = np.array([[[[1.0], [0.0]]]], np.float32)
    logits = np.array([[[[-200.0], [200.0]]]], np.float32)
    # log-sigmoid keeps each pixel's cross-entropy exact: -log(sigmoid(-200)) = 200.
    cross_entropy = 200.0
    # Dice of p = (0, 1) against y = (1, 0) with smooth 1: (2*0 + 1) / (1 + 1 + 1).
    dice_loss = 1 - 1 / 3
    expected = [
        # p_t = 0, so the focal factor (1 - p_t)**2 is 1 and focal equals cross-entropy.
        (losses.FocalLoss(from_logits=True), cross_entropy),
        (losses.FocalLoss(gamma=0.0, from_logits=True), cross_entropy),
        (losses.BCEDiceLoss(from_logits=True), 0.5 * cross_entropy + 0.5 * dice_loss),
        (losses.DiceLoss(from_logits=True), dice_loss),
    ]
    for loss, loss_value in expected:
        np.testing.assert_allclose(value(loss, y, logits), loss_value, **TOL)


def gradient(loss, y_true, y_pred):
    """d loss / d y_pred with the active backend's autodiff."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(lambda p: loss(y_true, p))(y_pred))
    if backend == "torch":
        import torch

        pred = torch.tensor(y_pred, requires_grad=True)
        loss(torch.tensor(y_true), pred).backward()
        return pred.grad.numpy()
    import tensorflow as tf

    pred = tf.Variable(y_pred)
    with tf.GradientTape() as tape:
        result = loss(tf.constant(y_true), pred)
    return tape.gradient(result, pred).numpy()


ALL_LOSSES = [
    losses.DiceLoss(smooth=0.0),
    losses.DiceLoss(per_image=True),
    losses.JaccardLoss(smooth=0.0, per_image=True),
    losses.TverskyLoss(alpha=0.3, beta=0.7),
    losses.FocalTverskyLoss(),
    losses.FocalTverskyLoss(smooth=0.0, per_image=True),
    losses.FocalLoss(alpha=0.25),
    losses.BCEDiceLoss(),
]


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=lambda loss: loss.name)
@pytest.mark.parametrize("inputs", ["probabilities", "zeros", "ones"])
def test_gradients_finite_on_empty_masks(loss, inputs):
    y_true = np.zeros((2, 4, 4, 1), np.float32)
    y_pred = {
        "probabilities": np.linspace(0.01, 0.99, 32, dtype=np.float32).reshape(2, 4, 4, 1),
        "zeros": np.zeros((2, 4, 4, 1), np.float32),
        "ones": np.ones((2, 4, 4, 1), np.float32),
    }[inputs]
    assert np.isfinite(value(loss, y_true, y_pred))
    assert np.all(np.isfinite(gradient(loss, y_true, y_pred)))


def test_perfect_empty_prediction_has_zero_loss():
    empty = np.zeros((2, 4, 4, 1), np.float32)
    for loss in (losses.DiceLoss(), losses.JaccardLoss(per_image=True), losses.FocalTverskyLoss()):
        np.testing.assert_allclose(value(loss, empty, empty), 0.0, atol=1e-3)


@pytest.mark.parametrize(
    "loss",
    [
        *ALL_LOSSES,
        losses.DiceLoss(mode="multiclass", class_weights=[0.0, 1.0, 2.0], from_logits=True),
        losses.BCEDiceLoss(mode="multilabel", bce_weight=2.0, per_image=True),
    ],
    ids=lambda loss: loss.name,
)
def test_serialization_round_trip(loss):
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is type(loss)
    assert restored.get_config() == loss.get_config()


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="mode must be one of"):
        losses.DiceLoss(mode="softmax")
    with pytest.raises(ValueError, match="class_weights"):
        losses.DiceLoss(class_weights=[0.0, 0.0])
    with pytest.raises(ValueError, match="alpha"):
        losses.FocalLoss(mode="multiclass", alpha=0.25)
    with pytest.raises(ValueError, match="binary mode expects one output channel"):
        losses.DiceLoss()(np.zeros((1, 2, 2, 2)), np.zeros((1, 2, 2, 2)))
    with pytest.raises(ValueError, match="multiclass mode needs"):
        losses.DiceLoss(mode="multiclass")(np.zeros((1, 2, 2, 1)), np.zeros((1, 2, 2, 1)))


def test_trains_a_tiny_model():
    """The losses work inside model.compile/fit on the active backend."""
    rng = np.random.default_rng(0)
    x = rng.random((4, 8, 8, 1)).astype(np.float32)
    y = (x > 0.5).astype(np.float32)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(1, 3, padding="same")])
    model.compile(optimizer="adam", loss=losses.BCEDiceLoss(from_logits=True))
    history = model.fit(x, y, epochs=2, batch_size=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
