"""Residual U-Net (Zhang, Liu and Wang, 2018) as the brain-tumour notebook built it."""

from __future__ import annotations

import keras
from keras import layers

from segkit.models._blocks import (
    LayerBuilder,
    check_input_shape,
    model_input,
    resolve_data_format,
    segmentation_head,
)
from segkit.models._registry import register


class _Builder(LayerBuilder):
    """The layers of this network, so each block reads like the paper's diagram."""

    def conv(self, x, filters, name, kernel=3, strides=1):
        return layers.Conv2D(
            filters,
            kernel,
            strides=strides,
            padding="same",
            data_format=self.data_format,
            name=name,
        )(x)

    def preact_conv(self, x, filters, name, strides=1):
        """BN -> ReLU -> 3x3 conv: the pre-activation unit of a residual block."""
        x = self.norm(x, f"{name}_bn")
        x = layers.Activation("relu", name=f"{name}_relu")(x)
        return self.conv(x, filters, f"{name}_conv", strides=strides)

    def shortcut(self, x, filters, name, kernel=3, strides=1):
        x = self.conv(x, filters, f"{name}_shortcut", kernel=kernel, strides=strides)
        return self.norm(x, f"{name}_shortcut_bn")

    def stem(self, x, filters, name="stem"):
        residual = self.conv(x, filters, f"{name}_conv")
        residual = self.preact_conv(residual, filters, f"{name}_unit")
        shortcut = self.shortcut(x, filters, name, kernel=1)
        return layers.Add(name=f"{name}_add")([residual, shortcut])

    def residual_block(self, x, filters, name, strides=1):
        residual = self.preact_conv(x, filters, f"{name}_unit1", strides=strides)
        residual = self.preact_conv(residual, filters, f"{name}_unit2")
        shortcut = self.shortcut(x, filters, name, strides=strides)
        return layers.Add(name=f"{name}_add")([residual, shortcut])


@register("resunet")
def resunet(
    input_shape=(256, 256, 1),
    num_classes: int = 1,
    multilabel: bool = False,
    base_filters: int = 16,
    depth: int = 4,
    dropout: float = 0.0,
    batch_norm: bool = True,
    data_format: str | None = None,
) -> keras.Model:
    """Residual U-Net: pre-activation residual blocks, strided downsampling, 6.3M parameters.

    The notebook's ResUNET: filters 16-32-64-128-256, a stem with a 1x1 shortcut, encoder
    blocks that downsample with stride 2 (3x3 conv + BN shortcuts), a two-convolution bridge,
    and decoder steps that upsample x2, concatenate the skip and apply a residual block
    (256/128/64/32 filters).

    Args:
        input_shape: ``(H, W, C)``; H and W divisible by ``2**depth`` (None for any size).
        num_classes: output channels; 1 gives a sigmoid mask, more a softmax over classes.
        multilabel: a sigmoid per output channel (overlapping regions), not a softmax.
        base_filters: filters of the stem, doubled at each of the ``depth`` encoder blocks.
        depth: number of stride-2 encoder blocks (and decoder steps).
        dropout: dropout rate after each decoder concatenation (the notebook uses none).
        batch_norm: batch normalisation in every unit and shortcut (the notebook's default).
        data_format: layout to compute in; default from `segkit.backend.default_data_format`.

    Returns:
        A ``keras.Model`` mapping ``(batch, H, W, C)`` images to ``(batch, H, W, num_classes)``
        probabilities.
    """
    check_input_shape(input_shape, depth)
    data_format = resolve_data_format(data_format)
    build = _Builder(data_format, batch_norm)
    filters = [base_filters * 2**level for level in range(depth + 1)]
    inputs, x = model_input(input_shape, data_format)

    skips = [build.stem(x, filters[0])]
    for level in range(1, depth + 1):
        skips.append(build.residual_block(skips[-1], filters[level], f"down{level}", strides=2))

    x = build.preact_conv(skips[-1], filters[-1], "bridge1")
    x = build.preact_conv(x, filters[-1], "bridge2")

    for level in reversed(range(depth)):
        name = f"up{level + 1}"
        x = layers.UpSampling2D(2, data_format=data_format, name=f"{name}_upsample")(x)
        x = layers.Concatenate(axis=build.axis, name=f"{name}_concat")([x, skips[level]])
        if dropout:
            x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
        x = build.residual_block(x, filters[level + 1], name)

    outputs = segmentation_head(x, num_classes, data_format, multilabel=multilabel)
    return keras.Model(inputs, outputs, name="resunet")
