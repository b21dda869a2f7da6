"""U-Net (Ronneberger et al., 2015) as the brain-tumour notebook built it."""

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


@register("unet")
def unet(
    input_shape=(256, 256, 1),
    num_classes: int = 1,
    multilabel: bool = False,
    base_filters: int = 32,
    depth: int = 4,
    dropout: float = 0.4,
    batch_norm: bool = False,
    data_format: str | None = None,
) -> keras.Model:
    """U-Net: four down and up blocks of paired 3x3 convs, 5.7M parameters (the notebook's).

    Args:
        input_shape: ``(H, W, C)``; H and W divisible by ``2**depth`` (None for any size).
        num_classes: output channels; 1 gives a sigmoid mask, more a softmax over classes.
        multilabel: a sigmoid per output channel (overlapping regions), not a softmax.
        base_filters: filters of the first block, doubled at each level below up to the
            deepest down block; the bottleneck keeps the deepest block's width.
        depth: number of down (and up) blocks.
        dropout: dropout rate after each pooling and each skip concatenation (0 disables).
        batch_norm: add batch normalisation after each convolution (the notebook has none).
        data_format: layout to compute in; default from `segkit.backend.default_data_format`.

    Returns:
        A ``keras.Model`` mapping ``(batch, H, W, C)`` images to ``(batch, H, W, num_classes)``
        probabilities.
    """
    check_input_shape(input_shape, depth)
    data_format = resolve_data_format(data_format)
    axis = channel_axis(data_format)
    inputs, x = model_input(input_shape, data_format)

    skips = []
    for level in range(depth):
        filters = base_filters * 2**level
        x = double_conv(x, filters, data_format, batch_norm, name=f"down{level + 1}")
        skips.append(x)
        x = layers.MaxPooling2D(2, data_format=data_format, name=f"down{level + 1}_pool")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"down{level + 1}_dropout")(x)

    x = double_conv(x, base_filters * 2 ** (depth - 1), data_format, batch_norm, name="bottleneck")

    for level in reversed(range(depth)):
        filters = base_filters * 2**level
        name = f"up{level + 1}"
        x = layers.Conv2DTranspose(
            filters, 3, strides=2, padding="same", data_format=data_format, name=f"{name}_upconv"
        )(x)
        x = layers.Concatenate(axis=axis, name=f"{name}_concat")([x, skips[level]])
        if dropout:
            x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
        x = double_conv(x, filters, data_format, batch_norm, name=name)

    outputs = segmentation_head(x, num_classes, data_format, multilabel=multilabel)
    return keras.Model(inputs, outputs, name="unet")
