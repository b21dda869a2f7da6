"""fast_unet, attention_unet and unet_plus_plus: sizes, configurability, layouts, round trips."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import segkit
from segkit.encoders._layers import Layers
from segkit.models._blocks import resolve_data_format
from segkit.models.attention_unet import attention_gate
from segkit.models.flops import count_flops

pytestmark = pytest.mark.backend

NAMES = ["fast_unet", "attention_unet", "unet_plus_plus"]
TINY = {"input_shape": (32, 32, 1), "base_filters": 4, "depth": 2}


def _images(seed: int, shape=(2, 32, 32, 1)) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def _layouts(model) -> set[str]:
    return {layer.data_format for layer in model.layers if hasattr(layer, "data_format")}


def _predict(model, x) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(x, training=False))


@pytest.mark.parametrize(
    ("name", "config", "params", "gflops"),
    [
        ("fast_unet", {}, 3_741_937, 2.80),
        ("attention_unet", {}, 1_999_637, 7.02),
        ("unet_plus_plus", {}, 2_295_329, 17.23),
        ("unet_plus_plus", {"deep_supervision": True}, 2_295_380, 17.24),
    ],
)
def test_default_sizes_are_pinned(name, config, params, gflops):
    """The numbers docs/architectures.md states, at 256x256x1."""
    model = segkit.models.get(name, **config)
    assert model.count_params() == params
    assert round(count_flops(model) / 1e9, 2) == gflops
    assert model.input_shape == (None, 256, 256, 1)
    assert model.output_shape == (None, 256, 256, 1)


def test_registered_with_one_line_descriptions():
    assert set(NAMES) <= set(segkit.models.list())
    for name in NAMES:
        description = segkit.models.describe(name)
        assert description and "\n" not in description


@pytest.mark.parametrize("name", NAMES)
def test_outputs_are_probabilities(name):
    y = _predict(segkit.models.get(name, **TINY), _images(0))
    assert y.shape == (2, 32, 32, 1)
    assert np.all((y >= 0) & (y <= 1))


@pytest.mark.parametrize("name", NAMES)
def test_multiclass_softmax_and_channels(name):
    model = segkit.models.get(name, input_shape=(32, 48, 3), num_classes=4, base_filters=4, depth=2)
    y = _predict(model, _images(1, (1, 32, 48, 3)))
    assert y.shape == (1, 32, 48, 4)
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_config_changes_the_network(name):
    small = segkit.models.get(name, **TINY)
    deeper = segkit.models.get(name, **{**TINY, "depth": 3})
    wider = segkit.models.get(name, **{**TINY, "base_filters": 8})
    plain = segkit.models.get(name, **{**TINY, "batch_norm": False})
    dropped = segkit.models.get(name, **{**TINY, "dropout": 0.2})
    assert deeper.count_params() > small.count_params()
    assert wider.count_params() > small.count_params()
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in small.layers)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in plain.layers)
    assert any(isinstance(layer, keras.layers.Dropout) for layer in dropped.layers)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"input_shape": (30, 32, 1)}, "height 30 must be a positive multiple of 4"),
        ({"num_classes": 0}, "num_classes must be at least 1"),
        ({"data_format": "nhwc"}, "data_format must be"),
    ],
)
def test_bad_config_is_a_clear_error(name, config, message):
    with pytest.raises(ValueError, match=message):
        segkit.models.get(name, **{**TINY, **config})


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("fast_unet", {}),
        ("attention_unet", {}),
        ("unet_plus_plus", {}),
        ("unet_plus_plus", {"deep_supervision": True}),
    ],
)
def test_keras_file_round_trip_in_safe_mode(name, config, tmp_path):
    model = segkit.models.get(name, **TINY, **config)
    x = _images(2)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(_predict(loaded, x), _predict(model, x), atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_layouts_share_weights_and_outputs(name, build_in_layout):
    """channels_first computes what channels_last does: natively where it runs, else by
    falling back to channels_last with a warning (see conftest)."""
    last = segkit.models.get(name, **TINY, data_format="channels_last")
    first, layout = build_in_layout(
        "channels_first", lambda: segkit.models.get(name, **TINY, data_format="channels_first")
    )
    assert _layouts(first) == {layout}
    first.set_weights(last.get_weights())
    x = _images(3)
    np.testing.assert_allclose(_predict(first, x), _predict(last, x), atol=1e-5)


def test_fast_unet_never_convolves_at_full_resolution():
    """Its speed comes from computing at half resolution or below; no depthwise convs either."""
    model = segkit.models.get("fast_unet", data_format="channels_last")
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs and not any(isinstance(c, keras.layers.DepthwiseConv2D) for c in convs)
    assert max(conv.output.shape[1] for conv in convs) == 128


@pytest.mark.parametrize("requested", ["channels_last", "channels_first"])
def test_attention_gate_scales_every_channel_by_one_coefficient(requested, build_in_layout):
    """In the layout a model asking for ``requested`` computes in here (see conftest)."""
    data_format, layout = build_in_layout(requested, lambda: resolve_data_format(requested))
    assert data_format == layout
    skip_shape, gating_shape = ((8, 8, 6), (4, 4, 10))
    if data_format == "channels_first":
        skip_shape, gating_shape = ((6, 8, 8), (10, 4, 4))
    skip, gating = keras.Input(skip_shape), keras.Input(gating_shape)
    gated, coefficients = attention_gate(skip, gating, 3, Layers(2, data_format), name="gate")
    model = keras.Model([skip, gating], [gated, coefficients])
    skip_values = _images(4, (2, *skip_shape))
    gated_values, coefficient_values = (
        keras.ops.convert_to_numpy(y) for y in model([skip_values, _images(5, (2, *gating_shape))])
    )
    channel_axis = -1 if data_format == "channels_last" else 1
    assert coefficient_values.shape[channel_axis] == 1
    assert np.all((coefficient_values >= 0) & (coefficient_values <= 1))
    np.testing.assert_allclose(gated_values, skip_values * coefficient_values, rtol=1e-6)


def test_unet_plus_plus_deep_supervision_averages_its_heads():
    model = segkit.models.get("unet_plus_plus", **TINY, deep_supervision=True)
    head_names = [f"head_{column}_probabilities" for column in (1, 2)]
    heads = keras.Model(model.input, [model.get_layer(name).output for name in head_names])
    x = _images(6)
    head_values = [keras.ops.convert_to_numpy(y) for y in heads(x, training=False)]
    np.testing.assert_allclose(_predict(model, x), np.mean(head_values, axis=0), rtol=1e-6)
