"""UNet++ (Zhou et al., 2018): a U-Net whose skips are nested, densely connected decoders.

Node ``X[i][j]`` sits at level ``i`` (resolution ``1 / 2**i``) and column ``j``: ``X[i][0]`` is
the encoder, and every later node convolves the concatenation of all earlier nodes of its level
with the upsampled node ``X[i + 1][j - 1]`` below. ``X[0][depth]`` is a full U-Net's output;
``X[0][1] .. X[0][depth - 1]`` are the outputs of shallower U-Nets sharing the same encoder.
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


@register("unet_plus_plus")
def unet_plus_plus(
    input_shape=(256, 256, 1),
    num_classes: int = 1,
    multilabel: bool = False,
    base_filters: int = 16,
    depth: int = 4,
    dropout: float = 0.0,
    batch_norm: bool = True,
    deep_supervision: bool = False,
    data_format: str | None = None,
) -> keras.Model:
    """UNet++: nested, densely connected skip pathways between encoder and decoder, 2.3M params.

    Every node is two 3x3 convolutions (with the filters of its level, doubling from
    ``base_filters``); upsampling is bilinear. With ``deep_supervision=True`` a 1x1 head reads
    each of the top nodes ``X[0][1] .. X[0][depth]`` and the model outputs the mean of their
    probabilities (the paper's "accurate mode"). The model keeps one output, so it trains with
    one loss on that mean rather than the paper's one loss per head; the heads still all receive
    gradient, and the shallower ones can be read (or pruned) by layer name: ``head_1`` ..
    ``head_{depth}``.

    Args:
        input_shape: ``(H, W, C)``; H and W divisible by ``2**depth`` (None for any size).
        num_classes: output channels; 1 gives a sigmoid mask, more a softmax over classes.
        multilabel: a sigmoid per output channel (overlapping regions), not a softmax.
        base_filters: filters of the top level's nodes, doubled at each level below.
        depth: number of poolings: the encoder has ``depth + 1`` levels.
        dropout: dropout rate after each node's concatenation (0 disables).
        batch_norm: batch normalisation after each 3x3 convolution.
        deep_supervision: average the probabilities of heads on all top nodes instead of
            reading only the last one.
        data_format: layout to compute in; default from `segkit.backend.default_data_format`.

    Returns:
        A ``keras.Model`` mapping ``(batch, H, W, C)`` images to ``(batch, H, W, num_classes)``
        probabilities.
    """
    check_input_shape(input_shape, depth)
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    data_format = resolve_data_format(data_format)
    axis = channel_axis(data_format)
    filters = [base_filters * 2**level for level in range(depth + 1)]
    inputs, x = model_input(input_shape, data_format)

    # nodes[i][j] is X[i][j]; the encoder column first.
    nodes = [[] for _ in range(depth + 1)]
    for level in range(depth + 1):
        if level:
            x = layers.MaxPooling2D(2, data_format=data_format, name=f"x{level}0_pool")(x)
        x = double_conv(x, filters[level], data_format, batch_norm, name=f"x{level}0")
        nodes[level].append(x)

    # Column by column, each node needs the node below it from the previous column.
    for column in range(1, depth + 1):
        for level in range(depth + 1 - column):
            name = f"x{level}{column}"
            below = layers.UpSampling2D(
                2, interpolation="bilinear", data_format=data_format, name=f"{name}_upsample"
            )(nodes[level + 1][column - 1])
            x = layers.Concatenate(axis=axis, name=f"{name}_concat")([*nodes[level], below])
            if dropout:
                x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
            nodes[level].append(double_conv(x, filters[level], data_format, batch_norm, name))

    if not deep_supervision:
        outputs = segmentation_head(
            nodes[0][depth], num_classes, data_format, multilabel=multilabel
        )
    else:
        heads = [
            segmentation_head(
                nodes[0][column],
                num_classes,
                data_format,
                name=f"head_{column}",
                multilabel=multilabel,
            )
            for column in range(1, depth + 1)
        ]
        outputs = layers.Average(dtype="float32", name="probabilities")(heads)
    return keras.Model(inputs, outputs, name="unet_plus_plus")
