"""UNET and ResUNET: the notebook's sizes, configurability, layouts and .keras round trips."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import segkit

pytestmark = pytest.mark.backend

TINY = {"input_shape": (32, 32, 1), "base_filters": 4, "depth": 2}


@pytest.mark.parametrize(("name", "params"), [("unet", 5_680_289), ("resunet", 6_287_409)])
def test_defaults_match_the_notebook(name, params):
    model = segkit.models.get(name)
    assert model.count_params() == params
    assert model.input_shape == (None, 256, 256, 1)
    assert model.output_shape == (None, 256, 256, 1)


@pytest.mark.parametrize("name", ["unet", "resunet"])
def test_outputs_are_probabilities(name):
    model = segkit.models.get(name, **TINY)
    x = np.random.default_rng(0).random((2, 32, 32, 1), dtype=np.float32)
    y = keras.ops.convert_to_numpy(model(x, training=False))
    assert y.shape == (2, 32, 32, 1)
    assert np.all((y >= 0) & (y <= 1))


@pytest.mark.parametrize("name", ["unet", "resunet"])
def test_multiclass_softmax_and_channels(name):
    model = segkit.models.get(name, input_shape=(32, 48, 3), num_classes=4, base_filters=4, depth=2)
    x = np.random.default_rng(1).random((1, 32, 48, 3), dtype=np.float32)
    y = keras.ops.convert_to_numpy(model(x))
    assert y.shape == (1, 32, 48, 4)
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("name", ["unet", "resunet"])
def test_config_changes_the_network(name):
    small = segkit.models.get(name, **TINY)
    deeper = segkit.models.get(name, **{**TINY, "depth": 3})
    normed = segkit.models.get(name, **{**TINY, "batch_norm": True, "dropout": 0.2})
    assert deeper.count_params() > small.count_params()
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in normed.layers)
    assert any(isinstance(layer, keras.layers.Dropout) for layer in normed.layers)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"input_shape": (30, 32, 1), "depth": 2}, "height 30 must be a positive multiple of 4"),
        ({"input_shape": (32, 32)}, "input_shape must be (height, width, channels)"),
        ({"num_classes": 0}, "num_classes must be at least 1"),
        ({"data_format": "nhwc"}, "data_format must be"),
    ],
)
def test_bad_config_is_a_clear_error(config, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        segkit.models.get("unet", **{**TINY, **config})


@pytest.mark.parametrize("name", ["unet", "resunet"])
def test_keras_file_round_trip_in_safe_mode(name, tmp_path):
    model = segkit.models.get(name, **{**TINY, "batch_norm": True})
    x = np.random.default_rng(2).random((2, 32, 32, 1), dtype=np.float32)
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x, training=False)), expected, atol=1e-6
    )


@pytest.mark.parametrize("name", ["unet", "resunet"])
def test_layouts_share_weights_and_outputs(name, build_in_layout):
    """channels_first computes what channels_last does: natively where it runs, else by
    falling back to channels_last with a warning (see conftest)."""
    last = segkit.models.get(name, **TINY, data_format="channels_last")
    first, layout = build_in_layout(
        "channels_first", lambda: segkit.models.get(name, **TINY, data_format="channels_first")
    )
    assert {lay.data_format for lay in first.layers if hasattr(lay, "data_format")} == {layout}
    first.set_weights(last.get_weights())
    x = np.random.default_rng(3).random((2, 32, 32, 1), dtype=np.float32)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(first(x)), keras.ops.convert_to_numpy(last(x)), atol=1e-5
    )
