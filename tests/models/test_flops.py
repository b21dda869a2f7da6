"""The FLOP counter: hand-computed layers, and the notebook U-Net's published 23.9 GFLOPs."""

from __future__ import annotations

import keras
import pytest
from keras import layers

import segkit
from segkit.models.flops import count_flops, layer_flops

pytestmark = pytest.mark.backend


def _single_layer_model(layer, input_shape):
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, layer(inputs))


def test_conv2d_is_two_flops_per_multiply_add():
    # 16x16 output positions x 3x3 kernel x 4 in x 8 out, times 2.
    model = _single_layer_model(layers.Conv2D(8, 3, padding="same"), (16, 16, 4))
    assert count_flops(model) == 2 * 16 * 16 * 3 * 3 * 4 * 8


def test_strided_and_grouped_conv2d_count_output_positions_and_groups():
    model = _single_layer_model(
        layers.Conv2D(8, 3, strides=2, padding="same", groups=2), (16, 16, 4)
    )
    assert count_flops(model) == 2 * 8 * 8 * 3 * 3 * 4 * 8 // 2


def test_channels_first_counts_the_same():
    model = _single_layer_model(
        layers.Conv2D(8, 3, padding="same", data_format="channels_first"), (4, 16, 16)
    )
    assert count_flops(model) == 2 * 16 * 16 * 3 * 3 * 4 * 8


def test_transposed_conv_scales_with_its_input_positions():
    # Each of the 8x8 input pixels scatters a 3x3x8 patch per input channel.
    model = _single_layer_model(layers.Conv2DTranspose(8, 3, strides=2, padding="same"), (8, 8, 4))
    assert count_flops(model) == 2 * 8 * 8 * 3 * 3 * 4 * 8


def test_dense_counts_every_leading_position():
    assert count_flops(_single_layer_model(layers.Dense(5), (10,))) == 2 * 10 * 5
    assert count_flops(_single_layer_model(layers.Dense(5), (3, 10))) == 2 * 3 * 10 * 5


def test_uncounted_layers_and_nested_models():
    inner = _single_layer_model(layers.Conv2D(2, 1), (4, 4, 3))
    inputs = keras.Input((4, 4, 3))
    outputs = layers.Activation("relu")(inner(layers.BatchNormalization()(inputs)))
    assert layer_flops(layers.ReLU()) == 0
    assert count_flops(keras.Model(inputs, outputs)) == 2 * 4 * 4 * 3 * 2


def test_unknown_spatial_size_is_a_clear_error():
    model = _single_layer_model(layers.Conv2D(2, 3, padding="same"), (None, None, 1))
    with pytest.raises(ValueError, match="unknown spatial size"):
        count_flops(model)


def test_notebook_unet_is_23_9_gflops():
    """The notebook reports 23.9 GFLOPs for its 256x256 U-Net: 2 x 11.95 G multiply-adds."""
    flops = count_flops(segkit.models.get("unet"))
    assert flops == pytest.approx(23.9e9, rel=0.01)


@pytest.mark.parametrize(("name", "gflops"), [("unet", 23.90), ("resunet", 29.92)])
def test_notebook_networks_cost_what_the_docs_say(name, gflops):
    model = segkit.models.get(name, data_format="channels_last")
    assert count_flops(model) / 1e9 == pytest.approx(gflops, abs=0.005)
