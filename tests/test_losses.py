"""segkit.losses against numpy formulas, on whichever Keras backend is active."""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
import textwrap

import keras
import numpy as np
import pytest

from segkit import losses
from segkit.cli import parse_pairs

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
    loss = losses.DiceLoss(
        mode="multiclass", from_logits=True, per_image=True, include_background=True
    )
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


# --- Finding losses by name ---------------------------------------------------------------

BUILTIN_LOSSES = {
    "dice": losses.DiceLoss,
    "bce_dice": losses.BCEDiceLoss,
    "jaccard": losses.JaccardLoss,
    "focal": losses.FocalLoss,
    "tversky": losses.TverskyLoss,
    "focal_tversky": losses.FocalTverskyLoss,
}

# Arguments other than the defaults, so that a lost setting shows in a round trip.
NON_DEFAULT_ARGS = {
    "dice": {"smooth": 0.5, "per_image": True},
    "bce_dice": {"bce_weight": 0.3, "dice_weight": 0.7},
    "jaccard": {"smooth": 0.0},
    "focal": {"gamma": 1.5, "alpha": 0.25},
    "tversky": {"alpha": 0.2, "beta": 0.8},
    "focal_tversky": {"gamma": 0.5},
}


def test_builtin_losses_are_listed():
    assert set(BUILTIN_LOSSES) <= set(losses.list())
    assert losses.list("*tversky") == ["focal_tversky", "tversky"]
    assert losses.list("nothing*") == []


@pytest.mark.parametrize("name", BUILTIN_LOSSES)
def test_get_builds_the_class_with_its_defaults(name, binary_batch):
    y, _, p = binary_batch
    loss = losses.get(name, mode="binary")
    expected = BUILTIN_LOSSES[name](mode="binary")
    assert type(loss) is type(expected)
    assert loss.get_config() == expected.get_config()
    np.testing.assert_allclose(value(loss, y, p), value(expected, y, p), **TOL)


@pytest.mark.parametrize("name", BUILTIN_LOSSES)
def test_every_builtin_loss_takes_the_mode_the_trainer_passes(name):
    assert losses.get(name, mode="multiclass").get_config()["mode"] == "multiclass"


def test_get_passes_tversky_weights_to_the_formula(binary_batch):
    y, _, p = binary_batch
    tp, fp, fn = (y * p).sum(), ((1 - y) * p).sum(), (y * (1 - p)).sum()
    for alpha, beta in ((0.5, 0.5), (0.2, 0.8), (0.9, 0.1)):
        # Pooled over the batch with smooth 1, the defaults.
        expected = 1 - (tp + 1) / (tp + alpha * fp + beta * fn + 1)
        loss = losses.get("tversky", mode="binary", alpha=alpha, beta=beta)
        np.testing.assert_allclose(value(loss, y, p), expected, **TOL)


def test_get_passes_name_on_to_the_loss():
    # get's own first argument is positional-only, so a loss's ``name`` argument gets through.
    assert losses.get("dice", name="lesion_dice").name == "lesion_dice"


def test_unknown_loss_lists_close_matches_and_all_names():
    with pytest.raises(KeyError, match="unknown loss 'tverski'. Did you mean 'tversky'") as info:
        losses.get("tverski")
    assert "Registered losses: bce_dice, dice, focal, focal_tversky, jaccard, tversky" in str(
        info.value
    )


def test_keyword_a_loss_does_not_take_is_a_clear_error():
    with pytest.raises(
        ValueError, match="loss 'tversky' does not take 'alhpa'; it takes alpha, beta"
    ):
        losses.get("tversky", mode="binary", alhpa=0.3)
    # Arguments a base class takes through **kwargs are accepted, others are not.
    with pytest.raises(ValueError, match="loss 'dice' does not take 'gamma'.*per_image"):
        losses.get("dice", per_image=True, gamma=2.0)


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations and plugins of a test vanish after it."""
    monkeypatch.setattr(losses._losses, "entries", dict(losses._losses.entries))
    monkeypatch.setattr(losses._losses, "plugins_loaded", False)


class ScaledAbsoluteError(keras.losses.Loss):
    """A stand-in loss: ``scale * mean|y - p|``."""

    def __init__(self, mode="binary", scale=1.0, name="scaled_absolute_error", **kwargs):
        super().__init__(name=name, **kwargs)
        self.mode = mode
        self.scale = scale

    def call(self, y_true, y_pred):
        return self.scale * keras.ops.mean(keras.ops.abs(y_true - y_pred))


def test_register_a_class_and_a_factory_in_process(scratch_registry, binary_batch):
    y, _, p = binary_batch
    losses.register("scaled_ae")(ScaledAbsoluteError)

    @losses.register()
    def smooth_free_dice(mode="binary"):
        return losses.DiceLoss(mode=mode, smooth=0.0)

    assert {"scaled_ae", "smooth_free_dice"} <= set(losses.list())
    loss = losses.get("scaled_ae", mode="binary", scale=3.0)
    np.testing.assert_allclose(value(loss, y, p), 3.0 * np.abs(y - p).mean(), **TOL)
    dice = losses.get("smooth_free_dice")
    np.testing.assert_allclose(value(dice, y, p), numpy_dice_loss(y, p, 0.0, False), **TOL)
    with pytest.raises(
        ValueError, match="loss 'smooth_free_dice' does not take 'scale'; it takes mode"
    ):
        losses.get("smooth_free_dice", scale=3.0)


def test_register_refuses_a_taken_name_and_a_loss_without_mode(scratch_registry):
    with pytest.raises(ValueError, match="'dice' is already registered by segkit.losses.DiceLoss"):
        losses.register("dice")(ScaledAbsoluteError)
    with pytest.raises(ValueError, match="loss 'plain' .* must accept a 'mode' argument"):

        @losses.register("plain")
        def plain(scale=1.0):
            return ScaledAbsoluteError(scale=scale)


class FakePlugins:
    """``segkit.losses`` entry points to modules written into a folder on ``sys.path``."""

    def __init__(self, folder, monkeypatch):
        self.folder = folder
        self.entries = []
        self.lookups = 0
        monkeypatch.syspath_prepend(str(folder))
        monkeypatch.setattr(importlib.metadata, "entry_points", self.entry_points)

    def add(self, module: str, source: str, **entries: str):
        """Write ``module`` and declare ``name = "value"`` entry points."""
        (self.folder / f"{module}.py").write_text(textwrap.dedent(source))
        importlib.invalidate_caches()
        for name, target in entries.items():
            self.entries.append(importlib.metadata.EntryPoint(name, target, "segkit.losses"))

    def entry_points(self, *, group):
        self.lookups += 1
        return [entry for entry in self.entries if entry.group == group]


@pytest.fixture
def fake_plugins(scratch_registry, tmp_path, monkeypatch):
    plugins = FakePlugins(tmp_path, monkeypatch)
    yield plugins
    # Forget the plugin modules too, so that no later import finds them half-registered.
    for module in {entry.module for entry in plugins.entries}:
        sys.modules.pop(module, None)


PLUGIN_MODULE = """
import keras


class HalfAbsoluteError(keras.losses.Loss):
    def __init__(self, mode="binary", name="half_absolute_error", **kwargs):
        super().__init__(name=name, **kwargs)
        self.mode = mode

    def call(self, y_true, y_pred):
        return 0.5 * keras.ops.mean(keras.ops.abs(y_true - y_pred))
"""


def test_plugin_entry_points_add_losses_once(fake_plugins, binary_batch):
    y, _, p = binary_batch
    fake_plugins.add(
        "segkit_test_loss_plugin",
        PLUGIN_MODULE,
        half_ae="segkit_test_loss_plugin:HalfAbsoluteError",
    )
    # An entry point may also name a module whose import registers its losses.
    fake_plugins.add(
        "segkit_test_loss_module",
        """
        from segkit import losses


        @losses.register("module_dice")
        def module_dice(mode="binary"):
            return losses.DiceLoss(mode=mode, smooth=0.0)
        """,
        anything="segkit_test_loss_module",
    )
    names = losses.list()
    assert {"half_ae", "module_dice", "dice"} <= set(names) and "anything" not in names
    loss = losses.get("half_ae", mode="binary")
    np.testing.assert_allclose(value(loss, y, p), 0.5 * np.abs(y - p).mean(), **TOL)
    assert type(losses.get("module_dice")) is losses.DiceLoss
    assert fake_plugins.lookups == 1


def test_broken_plugins_warn_and_the_rest_still_work(fake_plugins):
    fake_plugins.add(
        "segkit_test_broken_loss",
        "raise ImportError('missing dependency xyz')\n",
        broken="segkit_test_broken_loss:Loss",
    )
    fake_plugins.add(
        "segkit_test_odd_losses",
        PLUGIN_MODULE + "\n\ndef no_mode(scale=1.0):\n    return HalfAbsoluteError()\n",
        no_mode="segkit_test_odd_losses:no_mode",
        dice="segkit_test_odd_losses:HalfAbsoluteError",
    )
    with pytest.warns(RuntimeWarning) as warned:
        names = losses.list()
    messages = "\n".join(str(w.message) for w in warned)
    assert "loss plugin 'broken' (segkit_test_broken_loss:Loss) is skipped" in messages
    assert "missing dependency xyz" in messages
    assert "loss plugin 'no_mode'" in messages and "must accept a 'mode' argument" in messages
    assert "loss plugin 'dice'" in messages and "already registered" in messages
    assert set(BUILTIN_LOSSES) <= set(names) and not {"broken", "no_mode"} & set(names)
    assert type(losses.get("dice")) is losses.DiceLoss


def test_cli_arguments_reach_the_loss():
    args = parse_pairs(["alpha=0.2", "beta=0.8", "per_image=true"], "--loss-arg")
    config = losses.get("tversky", mode="binary", **args).get_config()
    assert (config["alpha"], config["beta"], config["per_image"]) == (0.2, 0.8, True)


@pytest.mark.parametrize("name", BUILTIN_LOSSES)
def test_from_config_round_trip(name, binary_batch):
    y, _, p = binary_batch
    loss = losses.get(name, mode="binary", **NON_DEFAULT_ARGS[name])
    restored = loss.__class__.from_config(loss.get_config())
    assert restored.get_config() == loss.get_config()
    np.testing.assert_allclose(value(restored, y, p), value(loss, y, p), **TOL)


@pytest.mark.parametrize("name", BUILTIN_LOSSES)
def test_compiled_model_saves_and_loads_with_its_loss(name, tmp_path, binary_batch):
    y, _, p = binary_batch
    loss = losses.get(name, mode="binary", **NON_DEFAULT_ARGS[name])
    model = keras.Sequential([keras.Input((6, 5, 1)), keras.layers.Activation("linear")])
    model.compile(optimizer="adam", loss=loss)
    model.save(tmp_path / "model.keras")
    restored = keras.saving.load_model(tmp_path / "model.keras").loss
    assert type(restored) is type(loss)
    assert restored.get_config() == loss.get_config()
    np.testing.assert_allclose(value(restored, y, p), value(loss, y, p), **TOL)
