"""Attention U-Net (Oktay et al., 2018): a U-Net whose skip connections pass through gates.

Each gate weighs the skip's features, pixel by pixel, by how relevant the coarser decoder level
(the gating signal) finds them, so the decoder sees less of the background.
"""

from __future__ import annotations

import keras
from keras import layers

from segkit.models._blocks import (
    channel_axis,
    check_input_shape,
    double_conv,
    model_input,
    resolve_data_format,
    segmentation_head,
)
from segkit.models._registry import register


def attention_gate(skip, gating, inter_filters: int, data_format: str, name: str):
    """Additive attention gate: ``skip * upsample(sigmoid(psi(relu(theta(skip) + phi(g)))))``.

    ``skip`` has twice the resolution of ``gating``; ``theta`` is a stride-2 1x1 convolution
    that brings it to the gating resolution, where the coefficients are computed cheaply.

    Returns:
        The gated skip (same shape as ``skip``) and the 1-channel coefficient map.
    """

    def conv(x, filters, conv_name, strides=1, use_bias=True):
        return layers.Conv2D(
            filters,
            1,
            strides=strides,
            use_bias=use_bias,
            data_format=data_format,
            name=f"{name}_{conv_name}",
        )(x)

    theta_x = conv(skip, inter_filters, "theta", strides=2, use_bias=False)
    phi_g = conv(gating, inter_filters, "phi")
    x = layers.Add(name=f"{name}_add")([theta_x, phi_g])
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    x = conv(x, 1, "psi")
    x = layers.Activation("sigmoid", name=f"{name}_sigmoid")(x)
    coefficients = layers.UpSampling2D(
        2, interpolation="bilinear", data_format=data_format, name=f"{name}_coefficients"
    )(x)
    # Multiply broadcasts the 1-channel map over the skip's channels on every backend.
    return layers.Multiply(name=f"{name}_gated")([skip, coefficients]), coefficients


@register("attention_unet")
def attention_unet(
    input_shape=(256, 256, 1),
    num_classes: int = 1,
    multilabel: bool = False,
    base_filters: int = 16,
    depth: int = 4,
    dropout: float = 0.0,
    batch_norm: bool = True,
    data_format: str | None = None,
) -> keras.Model:
    """Attention U-Net: a U-Net with additive attention gates on its skips, 2.0M parameters.

    The encoder and decoder are a U-Net's (two 3x3 convolutions per level, max pooling down,
    bilinear upsampling up, filters doubling to ``base_filters * 2**depth`` at the bottleneck).
    Before each skip is concatenated, a gate computes a coefficient in [0, 1] per pixel from the
    skip (``theta``, stride-2 1x1 convolution) and the coarser decoder features (``phi``, 1x1
    convolution): ``sigmoid(psi(relu(theta + phi)))``, upsampled x2 and multiplied into every
    channel of the skip. The gates use half the skip's filters internally.

    Args:
        input_shape: ``(H, W, C)``; H and W divisible by ``2**depth`` (None for any size).
        num_classes: output channels; 1 gives a sigmoid mask, more a softmax over classes.
        multilabel: a sigmoid per output channel (overlapping regions), not a softmax.
        base_filters: filters of the first level, doubled at each level below.
        depth: number of poolings (and of gated decoder steps).
        dropout: dropout rate after each decoder concatenation (0 disables).
        batch_norm: batch normalisation after each 3x3 convolution.
        data_format: layout to compute in; default from `segkit.backend.default_data_format`.

    Returns:
        A ``keras.Model`` mapping ``(batch, H, W, C)`` images to ``(batch, H, W, num_classes)``
        probabilities.
    """
    check_input_shape(input_shape, depth)
    data_format = resolve_data_format(data_format)
    axis = channel_axis(data_format)
    filters = [base_filters * 2**level for level in range(depth + 1)]
    inputs, x = model_input(input_shape, data_format)

    skips = []
    for level in range(depth):
        x = double_conv(x, filters[level], data_format, batch_norm, name=f"down{level + 1}")
        skips.append(x)
        x = layers.MaxPooling2D(2, data_format=data_format, name=f"down{level + 1}_pool")(x)

    x = double_conv(x, filters[depth], data_format, batch_norm, name="bottleneck")

    for level in reversed(range(depth)):
        name = f"up{level + 1}"
        gated_skip, _ = attention_gate(
            skips[level], x, max(1, filters[level] // 2), data_format, name=f"{name}_gate"
        )
        x = layers.UpSampling2D(
            2, interpolation="bilinear", data_format=data_format, name=f"{name}_upsample"
        )(x)
        x = layers.Concatenate(axis=axis, name=f"{name}_concat")([x, gated_skip])
        if dropout:
            x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
        x = double_conv(x, filters[level], data_format, batch_norm, name=name)

    outputs = segmentation_head(x, num_classes, data_format, multilabel=multilabel)
    return keras.Model(inputs, outputs, name="attention_unet")
