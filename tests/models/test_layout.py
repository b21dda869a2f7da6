"""Loading .keras files saved in channels_first where that layout cannot run.

"Cannot run" is forced here (``channels_first_supported`` patched to False), so these tests
run on every backend and CPU. Expected outputs come from a channels-last twin with the same
weights: it runs everywhere, and computes what the channels-first model does (see
``test_layouts_share_weights_and_outputs``).
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

import segkit
from segkit import backend
from segkit.models.layout import load_keras_model

pytestmark = pytest.mark.backend

TINY = {"input_shape": (32, 32, 1), "base_filters": 4, "depth": 2}
MODELS = [
    ("unet", {"batch_norm": True}),
    ("resunet", {}),
    ("attention_unet", {}),
    ("fast_unet", {}),
    ("unet_plus_plus", {"deep_supervision": True}),
]


def _layouts(model) -> set[str]:
    return {layer.data_format for layer in model.layers if hasattr(layer, "data_format")}


def _images(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((2, 32, 32, 1), dtype=np.float32)


def _predict(model, x) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(x, training=False))


def _channels_last_twin(name: str, config: dict) -> keras.Model:
    """A channels-last model with random weights, batch-norm statistics included."""
    model = segkit.models.get(name, **TINY, **config, data_format="channels_last")
    rng = np.random.default_rng(0)
    for variable in model.weights:
        low, high = (0.5, 1.5) if "variance" in variable.path else (-0.3, 0.3)
        variable.assign(rng.uniform(low, high, variable.shape).astype(np.float32))
    return model


def _channels_first(name: str, config: dict, monkeypatch) -> keras.Model:
    """The model built in channels_first, whether or not that layout runs here."""
    with monkeypatch.context() as patch:
        patch.setattr(backend, "channels_first_supported", lambda: True)
        model = segkit.models.get(name, **TINY, **config, data_format="channels_first")
    assert _layouts(model) == {"channels_first"}
    return model


@pytest.mark.parametrize(("name", "config"), MODELS)
def test_channels_first_file_loads_in_channels_last_with_the_same_outputs(
    name, config, tmp_path, monkeypatch
):
    twin = _channels_last_twin(name, config)
    first = _channels_first(name, config, monkeypatch)
    first.set_weights(twin.get_weights())
    path = tmp_path / f"{name}.keras"
    first.save(path)

    monkeypatch.setattr(backend, "channels_first_supported", lambda: False)
    with pytest.warns(UserWarning, match="loaded it in channels_last") as record:
        loaded = load_keras_model(path)
    assert len(record) == 1
    assert _layouts(loaded) == {"channels_last"}
    assert [w.path for w in loaded.weights] == [w.path for w in first.weights]
    x = _images(1)
    np.testing.assert_allclose(_predict(loaded, x), _predict(twin, x), atol=1e-5)


def test_channels_first_file_loads_unchanged_where_it_runs(tmp_path, monkeypatch):
    path = tmp_path / "unet.keras"
    _channels_first("unet", {}, monkeypatch).save(path)
    monkeypatch.setattr(backend, "channels_first_supported", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        loaded = load_keras_model(path)
    assert _layouts(loaded) == {"channels_first"}
    assert loaded.get_layer("to_channels_first").__class__.__name__ == "Permute"


def test_channels_last_file_loads_unchanged_without_a_warning(tmp_path, monkeypatch):
    model = _channels_last_twin("resunet", {})
    path = tmp_path / "resunet.keras"
    model.save(path)
    monkeypatch.setattr(backend, "channels_first_supported", lambda: False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        loaded = load_keras_model(path)
    x = _images(2)
    np.testing.assert_array_equal(_predict(loaded, x), _predict(model, x))


def test_training_checkpoint_resumes_in_channels_last(tmp_path, monkeypatch):
    """compile=True restores the optimizer state, so training continues as it would have."""
    x, y = _images(3), (_images(4) > 0.5).astype(np.float32)
    config = {"dropout": 0.0}  # no random masks, so both runs take the same step
    twin = _channels_last_twin("unet", config)
    twin.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy")
    twin.train_on_batch(x, y)
    first = _channels_first("unet", config, monkeypatch)
    first.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy")
    first.set_weights(twin.get_weights())
    first.optimizer.build(first.trainable_variables)
    for mine, theirs in zip(first.optimizer.variables, twin.optimizer.variables, strict=True):
        mine.assign(theirs)
    path = tmp_path / "last.keras"
    first.save(path)

    monkeypatch.setattr(backend, "channels_first_supported", lambda: False)
    with pytest.warns(UserWarning, match="loaded it in channels_last"):
        resumed = load_keras_model(path, compile=True)
    assert int(resumed.optimizer.iterations) == 1
    resumed.train_on_batch(x, y)
    twin.train_on_batch(x, y)
    for mine, theirs in zip(resumed.weights, twin.weights, strict=True):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(mine), keras.ops.convert_to_numpy(theirs), atol=1e-5
        )


def test_channels_first_on_the_input_itself_is_a_clear_error(tmp_path, monkeypatch):
    """A model that takes channels-first arrays cannot be re-laid out without changing them."""
    inputs = keras.Input((1, 8, 8))
    outputs = keras.layers.Conv2D(2, 3, data_format="channels_first", name="conv")(inputs)
    path = tmp_path / "nchw.keras"
    keras.Model(inputs, outputs).save(path)
    monkeypatch.setattr(backend, "channels_first_supported", lambda: False)
    with pytest.raises(ValueError, match="layer 'conv' computes channels_first on channels-last"):
        load_keras_model(path)
