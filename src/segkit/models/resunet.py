"""Residual U-Net (Zhang, Liu and Wang, 2018) as the brain-tumour notebook built it."""

from __future__ import annotations

import keras
from keras import layers

from segkit.encoders.native import ResUNetEncoder, ResUNetLayers
from segkit.models._blocks import Encoded, encode, finish, segmentation_head
from segkit.models._registry import register


def resunet_decoder(encoded: Encoded, *, dropout: float, batch_norm: bool):
    """ResUNET's decoder: a two-unit bridge on the deepest map, then at each stride up to 1 a
    x2 upsampling, the encoder's map at that stride concatenated (where it has one), dropout and
    a residual block. Over its own encoder each step keeps the width of the map one level
    deeper (256/128/64/32 by default); over another, see `Encoded.decoder_filters`.
    """
    build = encoded.layers(batch_norm, kind=ResUNetLayers)
    features = encoded.features.maps
    widths = encoded.widths()
    deepest = encoded.features.deepest
    x = build.preact_conv(
        features[deepest], encoded.decoder_filters(deepest, widths[deepest]), "bridge1"
    )
    x = build.preact_conv(x, encoded.decoder_filters(deepest, widths[deepest]), "bridge2")
    stride = deepest // 2
    while stride >= 1:
        name = f"up{stride.bit_length()}"
        x = build.upsample(x, f"{name}_upsample")
        if stride in features:
            x = build.concat([x, features[stride]], f"{name}_concat")
        if dropout:
            x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
        x = build.residual_block(x, encoded.decoder_filters(stride, widths.get(2 * stride)), name)
        stride //= 2
    return x


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
    spatial_dims: int = 2,
    encoder: str | None = None,
    encoder_weights=None,
) -> keras.Model:
    """Residual U-Net: pre-activation residual blocks, strided downsampling, 6.3M parameters.

    The notebook's ResUNET: filters 16-32-64-128-256, a stem with a 1x1 shortcut, encoder
    blocks that downsample with stride 2 (3x3 conv + BN shortcuts), a two-convolution bridge,
    and decoder steps that upsample x2, concatenate the skip and apply a residual block
    (256/128/64/32 filters). ``encoder`` puts this decoder over any registered encoder.

    Args:
        input_shape: ``(H, W, C)``, or ``(D, H, W, C)`` with ``spatial_dims=3``; each spatial
            size divisible by ``2**depth`` (None for any size).
        num_classes: output channels; 1 gives a sigmoid mask, more a softmax over classes.
        multilabel: a sigmoid per output channel (overlapping regions), not a softmax.
        base_filters: filters of the stem, doubled at each of the ``depth`` encoder blocks.
        depth: number of stride-2 encoder blocks (and decoder steps).
        dropout: dropout rate after each decoder concatenation (the notebook uses none).
        batch_norm: batch normalisation in every unit and shortcut (the notebook's default).
        data_format: layout to compute in; default from `segkit.backend.default_data_format`.
        spatial_dims: 2 for images, 3 for volumes.
        encoder: a registered encoder name; None: ResUNET's own.
        encoder_weights: what that encoder starts from (None: random; see `segkit.encoders`).

    Returns:
        A ``keras.Model`` mapping ``(batch, H, W, C)`` images to ``(batch, H, W, num_classes)``
        probabilities (with a depth axis in 3-D).
    """

    def own_encoder(**options):
        return ResUNetEncoder(filters=base_filters, depth=depth, batch_norm=batch_norm, **options)

    encoded = encode(
        input_shape,
        depth=depth,
        data_format=data_format,
        spatial_dims=spatial_dims,
        encoder=encoder,
        encoder_weights=encoder_weights,
        native=own_encoder,
    )
    x = resunet_decoder(encoded, dropout=dropout, batch_norm=batch_norm)
    outputs = segmentation_head(x, num_classes, encoded.data_format, multilabel=multilabel)
    return finish(encoded, outputs, "resunet")
