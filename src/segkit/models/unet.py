"""U-Net (Ronneberger et al., 2015) as the brain-tumour notebook built it, over any encoder."""

from __future__ import annotations

import keras
from keras import layers

from segkit.encoders.native import UNetEncoder
from segkit.models._blocks import Encoded, encode, finish, segmentation_head
from segkit.models._registry import register


def unet_decoder(encoded: Encoded, *, dropout: float, batch_norm: bool):
    """The U-Net decoder: at each stride from the deepest map's to 1, a 3x3 stride-2 transposed
    convolution, the encoder's map at that stride concatenated (where it has one), dropout and
    two 3x3 convolutions with the map's width (see `Encoded.decoder_filters`). Steps are named
    ``up1`` (ending at stride 1) upwards.

    Args:
        encoded: the input and the encoder's maps.
        dropout: rate after each concatenation (0 disables).
        batch_norm: batch normalisation after each convolution.
    """
    build = encoded.layers(batch_norm)
    features = encoded.features.maps
    widths = encoded.widths()
    x = features[encoded.features.deepest]
    stride = encoded.features.deepest // 2
    while stride >= 1:
        name = f"up{stride.bit_length()}"
        filters = encoded.decoder_filters(stride, widths.get(stride))
        x = build.conv_transpose(x, filters, f"{name}_upconv")
        if stride in features:
            x = build.concat([x, features[stride]], f"{name}_concat")
        if dropout:
            x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
        x = build.double_conv(x, filters, name)
        stride //= 2
    return x


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
    spatial_dims: int = 2,
    encoder: str | None = None,
    encoder_weights=None,
) -> keras.Model:
    """U-Net: four down and up blocks of paired 3x3 convs, 5.7M parameters (the notebook's).

    With the defaults this is the notebook's network. ``encoder`` puts the U-Net decoder over
    any registered encoder (`segkit.encoders.list`); its decoder then has 256 filters at stride
    16 halving to 16 at stride 1, as segmentation_models_pytorch's.

    Args:
        input_shape: ``(H, W, C)``, or ``(D, H, W, C)`` with ``spatial_dims=3``; each spatial
            size divisible by ``2**depth`` (None for any size).
        num_classes: output channels; 1 gives a sigmoid mask, more a softmax over classes.
        multilabel: a sigmoid per output channel (overlapping regions), not a softmax.
        base_filters: filters of the first block of the U-Net's own encoder, doubled at each
            level below up to the deepest down block; the bottleneck keeps its width.
        depth: number of down (and up) blocks; with another encoder, its maps down to stride
            ``2**depth`` are used.
        dropout: dropout rate after each pooling and each skip concatenation (0 disables).
        batch_norm: add batch normalisation after each convolution (the notebook has none).
        data_format: layout to compute in; default from `segkit.backend.default_data_format`.
        spatial_dims: 2 for images, 3 for volumes.
        encoder: a registered encoder name; None: the U-Net's own.
        encoder_weights: what that encoder starts from (None: random; see `segkit.encoders`).

    Returns:
        A ``keras.Model`` mapping ``(batch, H, W, C)`` images to ``(batch, H, W, num_classes)``
        probabilities (with a depth axis in 3-D).
    """

    def own_encoder(**options):
        return UNetEncoder(
            filters=base_filters, depth=depth, batch_norm=batch_norm, dropout=dropout, **options
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
    x = unet_decoder(encoded, dropout=dropout, batch_norm=batch_norm)
    outputs = segmentation_head(x, num_classes, encoded.data_format, multilabel=multilabel)
    return finish(encoded, outputs, "unet")
