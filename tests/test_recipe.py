"""The training recipe options: warm-up, gradient clipping, a moving average of the weights,
precise batch norm and per-image Dice, on a few real Figshare slices."""

from __future__ import annotations

import csv
import json

import keras
import numpy as np
import pytest
from click.testing import CliRunner

import segkit
from segkit import data, losses, training
from segkit.cli import cli
from segkit.runs import RunFolder, TrainConfig

pytestmark = pytest.mark.backend

# Eight training slices of all three tumour types in batches of four (two steps an epoch) and
# four validation slices (one batch, so a validation loss is one batch's loss).
TRAIN_KEYS = ("1", "2", "1000", "1001", "2000", "2001", "2500", "2501")
VAL_KEYS = ("10", "1010", "2010", "2510")
TINY = {
    "image_size": (32, 32),
    "batch_size": 4,
    "model_config": {"base_filters": 4, "depth": 2},
    "workers": 1,
}
WITH_BN = {"base_filters": 4, "depth": 2, "batch_norm": True}
RECIPE = {"warmup_epochs": 1, "clipnorm": 1.0, "ema": 0.9, "precise_bn": 2}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    path = tmp_path_factory.mktemp("split") / "split.json"
    data.Split(
        method="blocks", seed=0, fractions=(0.8, 0.2, 0.0), train=TRAIN_KEYS, val=VAL_KEYS, test=()
    ).save(path)
    return path


def _train(out, figshare, manifest, tmp_path, **settings):
    return training.train(
        "unet",
        figshare,
        out,
        quiet=True,
        manifest=str(manifest),
        cache=str(tmp_path / "cache"),
        **{**TINY, **settings},
    )


def _batches(figshare, keys, tmp_path, size=32):
    samples = {s.key: s for s in data.find_samples(figshare)}
    prep = data.Preprocessing(size=(size, size))
    return data.SegmentationDataset(
        [samples[k] for k in keys], prep, batch_size=len(keys), shuffle=False, cache=tmp_path
    )[0]


def _trainable(model) -> list[np.ndarray]:
    return [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]


def _close(a: list, b: list, atol: float) -> bool:
    return all(np.allclose(x, y, atol=atol) for x, y in zip(a, b))


# Settings --------------------------------------------------------------------------------


def test_recipe_options_default_to_the_old_behaviour():
    config = TrainConfig(data="d")
    assert config.warmup_epochs is None and config.clipnorm is None
    assert config.ema is None and config.precise_bn == 0


def test_recipe_options_round_trip_and_old_configs_read_as_defaults(tmp_path):
    run = RunFolder(tmp_path)
    run.write_config(TrainConfig(data="d", **RECIPE))
    assert {k: getattr(run.config(), k) for k in RECIPE} == RECIPE
    record = json.loads(run.config_file.read_text())
    for name in RECIPE:  # a run folder from before these settings existed
        del record["config"][name]
    run.config_file.write_text(json.dumps(record))
    old = run.config()
    assert (old.warmup_epochs, old.clipnorm, old.ema, old.precise_bn) == (None, None, None, 0)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"warmup_epochs": 5}, "warmup_epochs must be at least 0 and fewer than the 5 epochs"),
        ({"warmup_epochs": -1}, "warmup_epochs must be at least 0"),
        ({"clipnorm": 0.0}, "clipnorm must be positive"),
        ({"ema": 1.0}, "ema is a decay between 0 and 1"),
        ({"ema": 0.0}, "ema is a decay between 0 and 1"),
        ({"precise_bn": -2}, "precise_bn must be 0 or more"),
    ],
)
def test_bad_recipe_options_are_named(setting, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(data="d", epochs=5, **setting).check()


@pytest.mark.parametrize("flag", ["--ema", "--precise-bn", "--clipnorm", "--warmup-epochs"])
def test_recipe_options_are_refused_on_resume(tmp_path, flag):
    result = CliRunner().invoke(cli, ["train", "--resume", str(tmp_path), flag, "1"])
    assert result.exit_code == 2
    assert f"it does not take {flag} (start a new run" in result.output


# Warm-up and clipping --------------------------------------------------------------------


def _rates(model, steps):
    schedule = keras.optimizers.schedules.deserialize(model.optimizer.get_config()["learning_rate"])
    return [float(keras.ops.convert_to_numpy(schedule(step))) for step in steps]


def test_warm_up_epochs_for_both_schedules(tmp_path, figshare_256, manifest):
    # Two steps an epoch: two warm-up epochs are four steps.
    cosine = _train(
        tmp_path / "cosine", figshare_256, manifest, tmp_path, epochs=3, schedule="cosine",
        warmup_epochs=2,
    )  # fmt: skip
    assert _rates(cosine, (0, 2, 4, 6)) == pytest.approx([0, 0.5e-4, 1e-4, 0], rel=1e-6, abs=1e-12)
    constant = _train(tmp_path / "constant", figshare_256, manifest, tmp_path, epochs=2,
                      warmup_epochs=1)  # fmt: skip
    assert _rates(constant, (0, 1, 2, 4, 40)) == pytest.approx(
        [0, 0.5e-4, 1e-4, 1e-4, 1e-4], rel=1e-6, abs=1e-12
    )


def test_clipnorm_clips_the_global_gradient_norm(tmp_path, figshare_256, manifest):
    settings = {"epochs": 1, "learning_rate": 1e-2}
    keras.utils.set_random_seed(0)  # the weights a run with seed 0 starts from
    start = _trainable(segkit.models.get("unet", input_shape=(32, 32, 1), **TINY["model_config"]))
    free = _train(tmp_path / "free", figshare_256, manifest, tmp_path, **settings)
    clipped = _train(tmp_path / "clip", figshare_256, manifest, tmp_path, clipnorm=1e-9, **settings)
    assert clipped.optimizer.global_clipnorm == 1e-9
    # Adam steps about the learning rate whatever the gradient's size, unless the gradient
    # is far below its epsilon (1e-7): that happens only when it is clipped.
    moved = [np.abs(a - b).max() for a, b in zip(_trainable(free), start)]
    barely = [np.abs(a - b).max() for a, b in zip(_trainable(clipped), start)]
    assert max(barely) < 1e-3 < min(moved)


# Moving average of the weights -----------------------------------------------------------


def _val_loss(model, images, masks) -> float:
    """The validation loss in batches of one image: the mean of per-image Dice losses."""
    dice = losses.get("dice", mode="binary")
    probabilities = model.predict(images, verbose=0)
    return float(np.mean([dice(masks[i : i + 1], probabilities[i : i + 1]) for i in range(4)]))


def test_ema_is_validated_and_kept(tmp_path, figshare_256, manifest):
    # Batches of one image: eight steps, enough to move predictions off the constant output
    # of the first steps, whose loss would hardly tell two sets of weights apart.
    run = RunFolder(tmp_path / "run")
    model = _train(run.path, figshare_256, manifest, tmp_path, epochs=1, ema=0.9,
                   learning_rate=1e-2, batch_size=1)  # fmt: skip
    trained = run.load_last()  # the weights it steps, and the optimizer with the average
    assert trained.optimizer.use_ema and trained.optimizer.ema_momentum == 0.9
    raw = _trainable(trained)
    trained.optimizer.finalize_variable_values(trained.trainable_variables)
    average = _trainable(trained)
    best = run.load_best()
    assert not _close(raw, average, 1e-3)  # else nothing below could tell them apart
    assert _close(_trainable(best), average, 1e-6)
    assert _close(_trainable(model), average, 1e-6)

    # The logged validation loss is the average's, not the trained weights'.
    images, masks = _batches(figshare_256, VAL_KEYS, tmp_path / "cache")
    logged = float(next(csv.DictReader(open(run.log_file)))["val_loss"])
    assert _val_loss(best, images, masks) == pytest.approx(logged, abs=1e-5)
    trained.set_weights(run.load_last().get_weights())
    assert abs(_val_loss(trained, images, masks) - logged) > 1e-3

    # A run that goes on from this one starts from the average too (a negligible learning
    # rate leaves the starting weights).
    follow = _train(tmp_path / "next", figshare_256, manifest, tmp_path, epochs=1,
                    learning_rate=1e-12, init_from=str(run.path))  # fmt: skip
    assert _close(_trainable(follow), average, 1e-5)


def test_ema_run_resumes_with_its_average(tmp_path, figshare_256, manifest):
    settings = {"epochs": 2, "ema": 0.9, "learning_rate": 1e-2}
    whole = _train(tmp_path / "whole", figshare_256, manifest, tmp_path, **settings)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "cut", figshare_256, manifest, tmp_path,
               callbacks=[_Interrupt(epoch=1)], **settings)  # fmt: skip
    resumed = training.resume(tmp_path / "cut", quiet=True)
    # A resume that lost the average would restart it from zeros (or from the weights).
    assert _close(_trainable(whole), _trainable(resumed), 2e-3)
    whole_log = list(csv.DictReader(open(tmp_path / "whole" / "log.csv")))
    cut_log = list(csv.DictReader(open(tmp_path / "cut" / "log.csv")))
    assert float(cut_log[1]["val_loss"]) == pytest.approx(float(whole_log[1]["val_loss"]), 1e-3)


class _Interrupt(keras.callbacks.Callback):
    """Stops training in the middle of an epoch, as a kill would."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch
        self.current = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch:
            raise KeyboardInterrupt


# Precise batch norm ----------------------------------------------------------------------


def _first_bn_input_means(model, batches) -> np.ndarray:
    """What the first batch-norm layer's moving mean should be: the mean over ``batches`` of
    each batch's per-channel mean of that layer's input (a convolution of the image)."""
    features = keras.Model(model.input, model.get_layer("down1_conv1").output)
    channels = model.get_layer("down1_bn1").axis % 4  # channels first on some backends
    others = tuple(a for a in range(4) if a != channels)
    means = [keras.ops.convert_to_numpy(features(b)).mean(axis=others) for b in batches]
    return np.mean(means, axis=0)


def test_recompute_batch_norm_sets_the_mean_of_the_batch_statistics(tmp_path, figshare_256):
    keras.utils.set_random_seed(0)
    model = segkit.models.get("unet", input_shape=(32, 32, 1), **WITH_BN)
    images, _ = _batches(figshare_256, TRAIN_KEYS, tmp_path)
    batches = [images[:4], images[4:]]
    weights = _trainable(model)
    norms = [la for la in model.layers if isinstance(la, keras.layers.BatchNormalization)]
    assert training.recompute_batch_norm(model, batches) == len(norms) > 0
    layer = model.get_layer("down1_bn1")
    expected = _first_bn_input_means(model, batches)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.moving_mean), expected, rtol=1e-4)
    assert layer.momentum == 0.99  # the layer's own, back
    assert _close(_trainable(model), weights, 0.0)
    without = segkit.models.get("unet", input_shape=(32, 32, 1), **TINY["model_config"])
    assert training.recompute_batch_norm(without, batches) == 0


def test_precise_bn_before_validation(tmp_path, figshare_256, manifest):
    # Two batches are the whole (unaugmented) training set, in whichever order.
    settings = {"epochs": 1, "model_config": WITH_BN, "learning_rate": 1e-3}
    precise = _train(tmp_path / "precise", figshare_256, manifest, tmp_path, precise_bn=2,
                     **settings)  # fmt: skip
    plain = _train(tmp_path / "plain", figshare_256, manifest, tmp_path, **settings)
    images, _ = _batches(figshare_256, TRAIN_KEYS, tmp_path / "cache")
    for model, matches in ((precise, True), (plain, False)):
        expected = _first_bn_input_means(model, [images[:4], images[4:]])
        moving = keras.ops.convert_to_numpy(model.get_layer("down1_bn1").moving_mean)
        assert np.allclose(moving, expected, rtol=1e-4, atol=1e-6) == matches


def test_precise_bn_without_batch_norm_says_so(tmp_path, figshare_256, manifest):
    with pytest.warns(UserWarning, match="precise_bn: unet as configured has no batch norm"):
        _train(tmp_path / "run", figshare_256, manifest, tmp_path, epochs=1, precise_bn=2)


# Per-image Dice --------------------------------------------------------------------------


def test_per_image_dice_through_segkit_train(tmp_path, figshare_256, manifest):
    out = tmp_path / "run"
    args = ["train", "--data", figshare_256, "--out", out, "--manifest", manifest, "--cache",
            tmp_path / "cache", "--image-size", 32, "--batch-size", 4, "--workers", 1,
            "--epochs", 1, "--model-config", "base_filters=4", "--model-config", "depth=2",
            "--loss-arg", "per_image=true", "--quiet"]  # fmt: skip
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert RunFolder(out).config().loss_args == {"per_image": True}
    assert RunFolder(out).load_last().loss.per_image is True
