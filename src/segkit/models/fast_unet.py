"""Fast U-Net: a residual U-Net sized for training on a CPU.

Most of a plain U-Net's cost is its full-resolution convolutions. This network computes at most
at half resolution: a stride-2 stem, residual encoder blocks that halve the size at each level,
a light decoder (bilinear upsampling, concatenation, one 3x3 convolution per level), and class
scores at half resolution upsampled bilinearly to the input size. At 256x256 it needs about
2.8 GFLOPs per image, under an eighth of the notebook's U-Net.
"""

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
    """The layers of this network, so the network below reads as a list of blocks."""

    def conv(self, x, filters, name, kernel=3, strides=1):
        # A bias before batch normalisation would be cancelled by its mean subtraction.
        return layers.Conv2D(
            filters,
            kernel,
            strides=strides,
            padding="same",
            use_bias=not self.batch_norm,
            kernel_initializer="he_normal",
            data_format=self.data_format,
            name=name,
        )(x)

    def conv_bn_relu(self, x, filters, name, strides=1):
        x = self.conv(x, filters, f"{name}_conv", strides=strides)
        x = self.norm(x, f"{name}_bn")
        return layers.Activation("relu", name=f"{name}_relu")(x)

    def residual_block(self, x, filters, name, strides=1):
        """Two 3x3 convs with BN; a strided 1x1 projection shortcut when the shape changes."""
        residual = self.conv_bn_relu(x, filters, f"{name}_unit1", strides=strides)
        residual = self.conv(residual, filters, f"{name}_unit2_conv")
        residual = self.norm(residual, f"{name}_unit2_bn")
        shortcut = x
        if strides != 1 or x.shape[self.axis] != filters:
            shortcut = self.conv(x, filters, f"{name}_shortcut", kernel=1, strides=strides)
            shortcut = self.norm(shortcut, f"{name}_shortcut_bn")
        x = layers.Add(name=f"{name}_add")([residual, shortcut])
        return layers.Activation("relu", name=f"{name}_relu")(x)

    def upsample(self, x, name):
        return layers.UpSampling2D(
            2, interpolation="bilinear", data_format=self.data_format, name=name
        )(x)


@register("fast_unet")
def fast_unet(
    input_shape=(256, 256, 1),
    num_classes: int = 1,
    multilabel: bool = False,
    base_filters: int = 24,
    depth: int = 5,
    dropout: float = 0.0,
    batch_norm: bool = True,
    data_format: str | None = None,
) -> keras.Model:
    """Fast U-Net: stride-2 stem, residual encoder, light decoder; 2.8 GFLOPs at 256x256.

    The stem (a stride-2 3x3 convolution and a residual block) computes at half resolution;
    each further encoder level is a residual block whose first convolution has stride 2
    (filters 24-48-96-192-384 by default). Each decoder level reduces the deeper features to the
    skip's width with a 1x1 convolution (at the low resolution, where it is cheap), upsamples
    them bilinearly, concatenates the skip and applies one 3x3 convolution. The 1x1 head's class
    scores are upsampled bilinearly from half to full resolution before the sigmoid or softmax.
    No depthwise convolutions: they are slower per FLOP on CPU than plain ones.

    Args:
        input_shape: ``(H, W, C)``; H and W divisible by ``2**depth`` (None for any size).
        num_classes: output channels; 1 gives a sigmoid mask, more a softmax over classes.
        multilabel: a sigmoid per output channel (overlapping regions), not a softmax.
        base_filters: filters of the stem, doubled at each encoder level below it.
        depth: number of x2 downsamplings, the stem's included (and of decoder upsamplings).
        dropout: dropout rate after each decoder concatenation (0 disables).
        batch_norm: batch normalisation after every convolution but the head.
        data_format: layout to compute in; default from `segkit.backend.default_data_format`.

    Returns:
        A ``keras.Model`` mapping ``(batch, H, W, C)`` images to ``(batch, H, W, num_classes)``
        probabilities.
    """
    check_input_shape(input_shape, depth)
    data_format = resolve_data_format(data_format)
    build = _Builder(data_format, batch_norm)
    filters = [base_filters * 2**level for level in range(depth)]
    inputs, x = model_input(input_shape, data_format)

    x = build.conv_bn_relu(x, filters[0], "stem", strides=2)
    skips = [build.residual_block(x, filters[0], "down1")]
    for level in range(1, depth):
        skips.append(build.residual_block(skips[-1], filters[level], f"down{level + 1}", strides=2))

    x = skips[-1]
    for level in reversed(range(depth - 1)):
        name = f"up{level + 1}"
        x = build.conv(x, filters[level], f"{name}_reduce", kernel=1)
        x = build.upsample(x, f"{name}_upsample")
        x = layers.Concatenate(axis=build.axis, name=f"{name}_concat")([x, skips[level]])
        if dropout:
            x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
        x = build.conv_bn_relu(x, filters[level], name)

    # Class scores at half resolution, upsampled before the activation so the probabilities
    # are interpolated logits (smooth edges), not interpolated probabilities.
    outputs = segmentation_head(x, num_classes, data_format, upsample=2, multilabel=multilabel)
    return keras.Model(inputs, outputs, name="fast_unet")
