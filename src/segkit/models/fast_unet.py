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

from segkit.encoders.native import FastUNetEncoder, FastUNetLayers
from segkit.models._blocks import Encoded, encode, finish, segmentation_head
from segkit.models._registry import register


def fast_unet_decoder(encoded: Encoded, *, dropout: float, batch_norm: bool):
    """fast_unet's light decoder, from the deepest map up to the shallowest one's stride.

    Each step reduces the deeper features to the step's width with a 1x1 convolution (at the
    low resolution, where it is cheap), upsamples them bilinearly, concatenates the encoder's
    map at that stride (where it has one) and applies one 3x3 convolution. Returns the
    features and their stride (the head upsamples its class scores by it).
    """
    build = encoded.layers(batch_norm, kind=FastUNetLayers)
    features = encoded.features.maps
    widths = encoded.widths()
    finest = encoded.features.strides[0]
    x = features[encoded.features.deepest]
    stride = encoded.features.deepest // 2
    while stride >= finest:
        name = f"up{(stride // finest).bit_length()}"
        filters = encoded.decoder_filters(stride, widths.get(stride))
        x = build.bn_conv(x, filters, f"{name}_reduce", kernel=1)
        x = build.upsample(x, f"{name}_upsample", interpolation="bilinear")
        if stride in features:
            x = build.concat([x, features[stride]], f"{name}_concat")
        if dropout:
            x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
        x = build.conv_bn_relu(x, filters, name)
        stride //= 2
    return x, finest


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
    spatial_dims: int = 2,
    encoder: str | None = None,
    encoder_weights=None,
) -> keras.Model:
    """Fast U-Net: stride-2 stem, residual encoder, light decoder; 2.8 GFLOPs at 256x256.

    The stem (a stride-2 3x3 convolution and a residual block) computes at half resolution;
    each further encoder level is a residual block whose first convolution has stride 2
    (filters 24-48-96-192-384 by default). Each decoder level reduces the deeper features to the
    skip's width with a 1x1 convolution (at the low resolution, where it is cheap), upsamples
    them bilinearly, concatenates the skip and applies one 3x3 convolution. The 1x1 head's class
    scores are upsampled bilinearly from half to full resolution before the sigmoid or softmax.
    No depthwise convolutions: they are slower per FLOP on CPU than plain ones. ``encoder``
    puts this decoder over any registered encoder; the head then upsamples from that encoder's
    shallowest stride.

    Args:
        input_shape: ``(H, W, C)``, or ``(D, H, W, C)`` with ``spatial_dims=3``; each spatial
            size divisible by ``2**depth`` (None for any size).
        num_classes: output channels; 1 gives a sigmoid mask, more a softmax over classes.
        multilabel: a sigmoid per output channel (overlapping regions), not a softmax.
        base_filters: filters of the stem, doubled at each encoder level below it.
        depth: number of x2 downsamplings, the stem's included (and of decoder upsamplings).
        dropout: dropout rate after each decoder concatenation (0 disables).
        batch_norm: batch normalisation after every convolution but the head.
        data_format: layout to compute in; default from `segkit.backend.default_data_format`.
        spatial_dims: 2 for images, 3 for volumes.
        encoder: a registered encoder name; None: fast_unet's own.
        encoder_weights: what that encoder starts from (None: random; see `segkit.encoders`).

    Returns:
        A ``keras.Model`` mapping ``(batch, H, W, C)`` images to ``(batch, H, W, num_classes)``
        probabilities (with a depth axis in 3-D).
    """

    def own_encoder(**options):
        return FastUNetEncoder(filters=base_filters, depth=depth, batch_norm=batch_norm, **options)

    encoded = encode(
        input_shape,
        depth=depth,
        data_format=data_format,
        spatial_dims=spatial_dims,
        encoder=encoder,
        encoder_weights=encoder_weights,
        native=own_encoder,
    )
    x, stride = fast_unet_decoder(encoded, dropout=dropout, batch_norm=batch_norm)
    # Class scores at the decoder's stride, upsampled before the activation so the
    # probabilities are interpolated logits (smooth edges), not interpolated probabilities.
    outputs = segmentation_head(
        x, num_classes, encoded.data_format, upsample=stride, multilabel=multilabel
    )
    return finish(encoded, outputs, "fast_unet")
