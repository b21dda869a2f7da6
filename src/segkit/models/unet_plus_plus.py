"""UNet++ (Zhou et al., 2018): a U-Net whose skips are nested, densely connected decoders.

Node ``X[i][j]`` sits at level ``i`` (resolution ``1 / 2**i``) and column ``j``: ``X[i][0]`` is
the encoder, and every later node convolves the concatenation of all earlier nodes of its level
with the upsampled node ``X[i + 1][j - 1]`` below. ``X[0][depth]`` is a full U-Net's output;
``X[0][1] .. X[0][depth - 1]`` are the outputs of shallower U-Nets sharing the same encoder.
"""

from __future__ import annotations

import keras
from keras import layers

from segkit.encoders.native import UNetEncoder
from segkit.models._blocks import Encoded, encode, finish, segmentation_head
from segkit.models._registry import register


def unet_plus_plus_decoder(encoded: Encoded, *, dropout: float, batch_norm: bool) -> list:
    """The nested decoder over the encoder's maps, which must be at consecutive x2 strides.

    Level ``i`` is the encoder's ``i``-th map; returns the top nodes ``X[0][1] .. X[0][n]``,
    at the shallowest map's stride.

    Raises:
        ValueError: an encoder whose maps skip a stride (UNet++ joins every adjacent pair).
    """
    strides = encoded.features.strides
    if any(deeper != 2 * stride for stride, deeper in zip(strides, strides[1:])):
        raise ValueError(
            f"UNet++ needs an encoder's maps at consecutive x2 strides; {encoded.encoder.name!r} "
            f"gives strides {strides}"
        )
    build = encoded.layers(batch_norm)
    widths = encoded.widths()
    depth = len(strides) - 1
    # nodes[i][j] is X[i][j]; the encoder column first.
    nodes = [[encoded.features.maps[stride]] for stride in strides]
    # Column by column, each node needs the node below it from the previous column.
    for column in range(1, depth + 1):
        for level in range(depth + 1 - column):
            name = f"x{level}{column}"
            below = build.upsample(
                nodes[level + 1][column - 1], f"{name}_upsample", interpolation="bilinear"
            )
            x = build.concat([*nodes[level], below], f"{name}_concat")
            if dropout:
                x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
            filters = encoded.decoder_filters(strides[level], widths[strides[level]])
            nodes[level].append(build.double_conv(x, filters, name))
    return nodes[0][1:]


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
    spatial_dims: int = 2,
    encoder: str | None = None,
    encoder_weights=None,
) -> keras.Model:
    """UNet++: nested, densely connected skip pathways between encoder and decoder, 2.3M params.

    Every node is two 3x3 convolutions (with the filters of its level, doubling from
    ``base_filters``); upsampling is bilinear. With ``deep_supervision=True`` a 1x1 head reads
    each of the top nodes ``X[0][1] .. X[0][depth]`` and the model outputs the mean of their
    probabilities (the paper's "accurate mode"). The model keeps one output, so it trains with
    one loss on that mean rather than the paper's one loss per head; the heads still all receive
    gradient, and the shallower ones can be read (or pruned) by layer name: ``head_1`` ..
    ``head_{depth}``. ``encoder`` puts the nested decoder over any registered encoder whose
    maps are at consecutive x2 strides; the heads then upsample from its shallowest stride.

    Args:
        input_shape: ``(H, W, C)``, or ``(D, H, W, C)`` with ``spatial_dims=3``; each spatial
            size divisible by ``2**depth`` (None for any size).
        num_classes: output channels; 1 gives a sigmoid mask, more a softmax over classes.
        multilabel: a sigmoid per output channel (overlapping regions), not a softmax.
        base_filters: filters of the top level's nodes, doubled at each level below.
        depth: number of poolings: the encoder has ``depth + 1`` levels.
        dropout: dropout rate after each node's concatenation (0 disables).
        batch_norm: batch normalisation after each 3x3 convolution.
        deep_supervision: average the probabilities of heads on all top nodes instead of
            reading only the last one.
        data_format: layout to compute in; default from `segkit.backend.default_data_format`.
        spatial_dims: 2 for images, 3 for volumes.
        encoder: a registered encoder name; None: the U-Net's own, named as UNet++'s nodes.
        encoder_weights: what that encoder starts from (None: random; see `segkit.encoders`).

    Returns:
        A ``keras.Model`` mapping ``(batch, H, W, C)`` images to ``(batch, H, W, num_classes)``
        probabilities (with a depth axis in 3-D).
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")

    def own_encoder(**options):
        return UNetEncoder(
            filters=base_filters,
            depth=depth,
            batch_norm=batch_norm,
            dropout=0.0,
            widen_bottleneck=True,
            layer_names="nested",
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
    top = unet_plus_plus_decoder(encoded, dropout=dropout, batch_norm=batch_norm)
    stride = encoded.features.strides[0]
    data_format = encoded.data_format
    if not deep_supervision:
        outputs = segmentation_head(
            top[-1], num_classes, data_format, upsample=stride, multilabel=multilabel
        )
    else:
        heads = [
            segmentation_head(
                node,
                num_classes,
                data_format,
                name=f"head_{column}",
                upsample=stride,
                multilabel=multilabel,
            )
            for column, node in enumerate(top, start=1)
        ]
        outputs = layers.Average(dtype="float32", name="probabilities")(heads)
    return finish(encoded, outputs, "unet_plus_plus")
