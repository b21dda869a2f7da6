"""Attention U-Net (Oktay et al., 2018): a U-Net whose skip connections pass through gates.

Each gate weighs the skip's features, pixel by pixel, by how relevant the coarser decoder level
(the gating signal) finds them, so the decoder sees less of the background.
"""

from __future__ import annotations

import keras
from keras import layers

from segkit.encoders._layers import Layers
from segkit.encoders.native import UNetEncoder
from segkit.models._blocks import Encoded, encode, finish, segmentation_head
from segkit.models._registry import register


def attention_gate(skip, gating, inter_filters: int, build: Layers, name: str):
    """Additive attention gate: ``skip * upsample(sigmoid(psi(relu(theta(skip) + phi(g)))))``.

    ``skip`` has twice the resolution of ``gating``; ``theta`` is a stride-2 1x1 convolution
    that brings it to the gating resolution, where the coefficients are computed cheaply.

    Returns:
        The gated skip (same shape as ``skip``) and the 1-channel coefficient map.
    """
    theta_x = build.conv(skip, inter_filters, f"{name}_theta", kernel=1, strides=2, use_bias=False)
    phi_g = build.conv(gating, inter_filters, f"{name}_phi", kernel=1)
    x = layers.Add(name=f"{name}_add")([theta_x, phi_g])
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    x = build.conv(x, 1, f"{name}_psi", kernel=1)
    x = layers.Activation("sigmoid", name=f"{name}_sigmoid")(x)
    coefficients = build.upsample(x, f"{name}_coefficients", interpolation="bilinear")
    # Multiply broadcasts the 1-channel map over the skip's channels on every backend.
    return layers.Multiply(name=f"{name}_gated")([skip, coefficients]), coefficients


def attention_unet_decoder(encoded: Encoded, *, dropout: float, batch_norm: bool):
    """The attention U-Net decoder: at each stride from the deepest map's to 1, the encoder's
    map at that stride (where it has one) passes a gate driven by the coarser decoder features,
    then bilinear x2 upsampling, concatenation, dropout and two 3x3 convolutions."""
    build = encoded.layers(batch_norm)
    features = encoded.features.maps
    widths = encoded.widths()
    x = features[encoded.features.deepest]
    stride = encoded.features.deepest // 2
    while stride >= 1:
        name = f"up{stride.bit_length()}"
        filters = encoded.decoder_filters(stride, widths.get(stride))
        skip = None
        if stride in features:
            skip, _ = attention_gate(
                features[stride], x, max(1, widths[stride] // 2), build, name=f"{name}_gate"
            )
        x = build.upsample(x, f"{name}_upsample", interpolation="bilinear")
        if skip is not None:
            x = build.concat([x, skip], f"{name}_concat")
        if dropout:
            x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
        x = build.double_conv(x, filters, name)
        stride //= 2
    return x


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
    spatial_dims: int = 2,
    encoder: str | None = None,
    encoder_weights=None,
) -> keras.Model:
    """Attention U-Net: a U-Net with additive attention gates on its skips, 2.0M parameters.

    The encoder and decoder are a U-Net's (two 3x3 convolutions per level, max pooling down,
    bilinear upsampling up, filters doubling to ``base_filters * 2**depth`` at the bottleneck).
    Before each skip is concatenated, a gate computes a coefficient in [0, 1] per pixel from the
    skip (``theta``, stride-2 1x1 convolution) and the coarser decoder features (``phi``, 1x1
    convolution): ``sigmoid(psi(relu(theta + phi)))``, upsampled x2 and multiplied into every
    channel of the skip. The gates use half the skip's filters internally. ``encoder`` puts
    this decoder over any registered encoder.

    Args:
        input_shape: ``(H, W, C)``, or ``(D, H, W, C)`` with ``spatial_dims=3``; each spatial
            size divisible by ``2**depth`` (None for any size).
        num_classes: output channels; 1 gives a sigmoid mask, more a softmax over classes.
        multilabel: a sigmoid per output channel (overlapping regions), not a softmax.
        base_filters: filters of the first level, doubled at each level below.
        depth: number of poolings (and of gated decoder steps).
        dropout: dropout rate after each decoder concatenation (0 disables).
        batch_norm: batch normalisation after each 3x3 convolution.
        data_format: layout to compute in; default from `segkit.backend.default_data_format`.
        spatial_dims: 2 for images, 3 for volumes.
        encoder: a registered encoder name; None: the U-Net's own, widened at the bottleneck.
        encoder_weights: what that encoder starts from (None: random; see `segkit.encoders`).

    Returns:
        A ``keras.Model`` mapping ``(batch, H, W, C)`` images to ``(batch, H, W, num_classes)``
        probabilities (with a depth axis in 3-D).
    """

    def own_encoder(**options):
        return UNetEncoder(
            filters=base_filters,
            depth=depth,
            batch_norm=batch_norm,
            dropout=0.0,
            widen_bottleneck=True,
            **options,
        )

    encoded = encode(
        input_shape,
        depth=depth,
        data_format=data_format,
        spatial_dims=spatial_dims,
        encoder=encoder,
        encoder_weights=encoder_weights,
        native=own_encoder,
    )
    x = attention_unet_decoder(encoded, dropout=dropout, batch_norm=batch_norm)
    outputs = segmentation_head(x, num_classes, encoded.data_format, multilabel=multilabel)
    return finish(encoded, outputs, "attention_unet")
