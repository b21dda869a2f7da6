"""Training runs: the run folder, early stopping, and resuming after an interruption."""

from __future__ import annotations

import csv
import json

import keras
import numpy as np
import pytest

import segkit
from segkit import data, training
from segkit.demo import sample_dir
from segkit.models import pretrained as weights

pytestmark = pytest.mark.backend

TINY = {
    "image_size": (32, 32),
    "batch_size": 2,
    "model_config": {"base_filters": 4, "depth": 2},
    "workers": 1,
}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    """Four bundled slices to train on, two to validate on."""
    keys = [s.key for s in data.find_samples(sample_dir())]
    path = tmp_path_factory.mktemp("split") / "split.json"
    data.Split(
        method="random",
        seed=0,
        fractions=(0.6, 0.4, 0.0),
        train=tuple(keys[:4]),
        val=tuple(keys[4:]),
        test=(),
    ).save(path)
    return path


PREP_32 = {"size": (32, 32), "channels": 1, "normalize": "divide255"}


def _train(out, manifest, tmp_path, **settings):
    return training.train(
        "unet",
        sample_dir(),
        out,
        quiet=True,
        manifest=str(manifest),
        cache=str(tmp_path / "cache"),
        **{**TINY, **settings},
    )


def test_run_folder_has_every_file(tmp_path, manifest):
    run = tmp_path / "run"
    _train(run, manifest, tmp_path, epochs=2)
    for name in ("config.json", "split.json", "last.keras", "best.keras", "log.csv", "curves.png"):
        assert (run / name).is_file(), name
    rows = list(csv.DictReader(open(run / "log.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert {"loss", "dice", "val_loss", "val_dice"} <= set(rows[0])
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["model"] == "unet" and config["backend"] == keras.backend.backend()
    assert training.read_state(run / "last.keras").epoch == 2


def test_refuses_to_overwrite_a_run(tmp_path, manifest):
    run = tmp_path / "run"
    _train(run, manifest, tmp_path, epochs=1)
    with pytest.raises(FileExistsError, match="already holds a run"):
        _train(run, manifest, tmp_path, epochs=1)


def test_bad_settings_fail_before_writing(tmp_path, manifest):
    with pytest.raises(ValueError, match="unknown loss 'dicey'"):
        _train(tmp_path / "run", manifest, tmp_path, loss="dicey")
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        _train(tmp_path / "run", manifest, tmp_path, schedule="linear")
    with pytest.raises(ValueError, match="unknown precision 'int8'"):
        _train(tmp_path / "run", manifest, tmp_path, precision="int8")
    with pytest.raises(KeyError, match="unknown model"):
        training.train("unetz", sample_dir(), tmp_path / "run2")
    assert not (tmp_path / "run").exists() and not (tmp_path / "run2").exists()


class _Interrupt(keras.callbacks.Callback):
    """Stops training abruptly in the middle of an epoch, as a kill would."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch
        self.current = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch:
            raise KeyboardInterrupt


def test_resume_matches_an_uninterrupted_run(tmp_path, manifest):
    settings = {"epochs": 2, "model_config": {"base_filters": 4, "depth": 2, "dropout": 0.2}}
    whole = _train(tmp_path / "whole", manifest, tmp_path, **settings)

    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "cut", manifest, tmp_path, callbacks=[_Interrupt(epoch=1)], **settings)
    assert training.read_state(tmp_path / "cut" / "last.keras").epoch == 1
    resumed = training.resume(tmp_path / "cut", quiet=True)

    # Same data order, dropout draws and optimizer state: only float round-off differs.
    # (A resume that lost any of them moves weights by ~1e-2 or more.)
    for a, b in zip(whole.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(a, b, atol=2e-3)
    log = list(csv.DictReader(open(tmp_path / "cut" / "log.csv")))
    assert [int(r["epoch"]) for r in log] == [1, 2]


def test_resume_without_a_run_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no run"):
        training.resume(tmp_path)


def test_early_stopping_restores_the_best_epoch(tmp_path, manifest):
    run = tmp_path / "run"
    model = _train(run, manifest, tmp_path, epochs=4, patience=1, learning_rate=1e-12)
    state = training.read_state(run / "last.keras")
    # A negligible learning rate improves nothing after epoch 1: patience 1 stops at epoch 2.
    assert state.epoch == 2 and state.best_epoch == 1
    best = keras.saving.load_model(run / "best.keras", compile=False)
    for a, b in zip(model.get_weights(), best.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_trained_model_is_a_registered_architecture(tmp_path, manifest):
    model = _train(tmp_path / "run", manifest, tmp_path, epochs=1)
    reference = segkit.models.get("unet", input_shape=(32, 32, 1), base_filters=4, depth=2)
    assert model.count_params() == reference.count_params()


def test_crop_training_gives_a_model_for_whole_slices(tmp_path, manifest):
    model = _train(tmp_path / "run", manifest, tmp_path, epochs=1, crop=16)
    assert model.input_shape == (None, None, None, 1)
    x = np.zeros((1, 32, 32, 1), np.float32)
    assert keras.ops.convert_to_numpy(model(x)).shape == (1, 32, 32, 1)


def test_cosine_schedule_warms_up_then_decays_to_zero(tmp_path, manifest):
    # Four training slices in batches of two: two steps per epoch, six in all.
    model = _train(tmp_path / "run", manifest, tmp_path, epochs=3, schedule="cosine")
    schedule = keras.optimizers.schedules.deserialize(model.optimizer.get_config()["learning_rate"])
    rates = [float(keras.ops.convert_to_numpy(schedule(step))) for step in (0, 1, 2, 4, 6)]
    assert rates[0] == 0.0 and rates[1] == pytest.approx(0.5e-4)
    assert rates[2] == pytest.approx(1e-4)  # the configured rate, after one epoch
    assert rates[2] > rates[3] > rates[4] and rates[4] == pytest.approx(0.0, abs=1e-12)
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 6


def test_mixed_precision_run_keeps_float32_weights_and_resumes(tmp_path, manifest):
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        _train(
            run,
            manifest,
            tmp_path,
            epochs=2,
            precision="mixed_bfloat16",
            callbacks=[_Interrupt(epoch=1)],
        )
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    model = training.resume(run, quiet=True)
    assert model.get_layer("down1_conv1").dtype_policy.name == "mixed_bfloat16"
    assert all(w.dtype == "float32" for w in model.weights)
    x = np.zeros((1, 32, 32, 1), np.float32)
    assert keras.ops.convert_to_numpy(model(x)).dtype == np.float32
    assert training.read_state(run / "last.keras").epoch == 2


def test_init_from_starts_with_another_runs_weights(tmp_path, manifest):
    first = _train(tmp_path / "crops", manifest, tmp_path, epochs=1, crop=16)
    second = _train(
        tmp_path / "whole",
        manifest,
        tmp_path,
        epochs=1,
        learning_rate=1e-12,
        init_from=str(tmp_path / "crops"),
    )
    # A negligible learning rate leaves the starting weights: they must be the first run's.
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_init_from_a_weights_npz(tmp_path, manifest):
    # Weights far from any that seed 0 would draw, so that ignoring the file cannot pass.
    source = segkit.models.get("unet", input_shape=(32, 32, 1), **TINY["model_config"])
    rng = np.random.default_rng(7)
    source.set_weights([rng.uniform(-1, 1, w.shape) for w in source.get_weights()])
    npz = tmp_path / "start.npz"
    config = {"input_shape": (32, 32, 1), **TINY["model_config"]}
    weights.save_weights(source, npz, builder="unet", config=config, preprocessing=PREP_32)
    second = _train(
        tmp_path / "second",
        manifest,
        tmp_path,
        epochs=1,
        learning_rate=1e-12,
        init_from=str(npz),
    )
    # A negligible learning rate leaves the starting weights: the file's, to float16 rounding.
    for a, b in zip(source.get_weights(), second.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6)
    assert json.loads((tmp_path / "second" / "config.json").read_text())["config"][
        "init_from"
    ] == str(npz)


def test_init_from_an_npz_that_does_not_fit_names_the_file(tmp_path, manifest):
    npz = tmp_path / "wide.npz"
    config = {"input_shape": (32, 32, 1), "depth": 2}
    network = segkit.models.get("unet", **config)
    weights.save_weights(network, npz, builder="unet", config=config, preprocessing=PREP_32)
    with pytest.raises(ValueError, match="init_from: weights file .*wide.npz does not fit"):
        _train(tmp_path / "run", manifest, tmp_path, epochs=1, init_from=str(npz))
    assert not (tmp_path / "run").exists()


def test_init_from_weights_that_do_not_fit_names_the_file(tmp_path, manifest):
    _train(tmp_path / "small", manifest, tmp_path, epochs=1)
    with pytest.raises(ValueError, match="small/last.keras .* do not fit"):
        _train(
            tmp_path / "big",
            manifest,
            tmp_path,
            epochs=1,
            init_from=str(tmp_path / "small"),
            model_config={"base_filters": 8, "depth": 2},
        )
    assert not (tmp_path / "big").exists()
