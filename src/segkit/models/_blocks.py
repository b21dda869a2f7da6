"""Pieces shared by the architectures: input checks, layout handling and the output head.

Every segkit model takes and returns channels-last arrays ``(batch, H, W, C)`` (or
``(batch, D, H, W, C)`` in 3-D), whatever layout it computes in. Each architecture is an encoder
(`segkit.encoders`; its own by default) under its decoder: `encode` makes the input and applies
the encoder, the architecture's decoder builds on the feature maps, `segmentation_head` and
`finish` end the model. With ``data_format="channels_first"`` (the faster layout for torch on
CPU) the model transposes once after the input and once before the output.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import keras
from keras import layers

from segkit import backend, encoders
from segkit.encoders import Encoder, FeatureMaps
from segkit.encoders._layers import Layers, check_spatial_dims

#: Why a model asked for channels_first computes in channels_last; one line.
CHANNELS_FIRST_FALLBACK = (
    "segkit: TensorFlow cannot run channels_first (NCHW) convolutions on this CPU (that needs "
    "a GPU or its oneDNN kernels, on by default on CPUs with VNNI, AVX-512 BF16 or AMX); "
    "computing in channels_last instead, with the same outputs. Ask for "
    "data_format='channels_last' to silence this warning."
)


def resolve_data_format(data_format: str | None) -> str:
    """The layout a model computes in: ``data_format``, or the backend's default.

    Falls back to ``channels_last``, with one warning, where ``channels_first`` cannot run (see
    `segkit.backend.channels_first_supported`): models take and return channels-last arrays
    either way, so only speed differs.

    Raises:
        ValueError: a ``data_format`` other than ``channels_last`` or ``channels_first``.
    """
    data_format = data_format or backend.default_data_format()
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(
            f"data_format must be 'channels_last' or 'channels_first', got {data_format!r}"
        )
    if data_format == "channels_first" and not backend.channels_first_supported():
        # stacklevel 4: point at whoever called the builder, not at the builder or `encode`.
        warnings.warn(CHANNELS_FIRST_FALLBACK, UserWarning, stacklevel=4)
        return "channels_last"
    return data_format


def check_input_shape(input_shape, depth: int, spatial_dims: int = 2) -> tuple:
    """Validate ``(H, W, C)`` (2-D) or ``(D, H, W, C)`` (3-D): each spatial size divisible by
    ``2**depth`` (or None)."""
    check_spatial_dims(spatial_dims)
    axes = ("height", "width") if spatial_dims == 2 else ("depth", "height", "width")
    try:
        *sizes, channels = input_shape
        if len(sizes) != spatial_dims:
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(
            f"input_shape must be ({', '.join(axes)}, channels) for spatial_dims={spatial_dims}, "
            f"got {input_shape!r}"
        ) from None
    factor = 2**depth
    for axis, size in zip(axes, sizes, strict=True):
        if size is not None and (size <= 0 or size % factor):
            raise ValueError(
                f"input_shape {axis} {size} must be a positive multiple of {factor} "
                f"(2**depth with depth={depth})"
            )
    if channels is None or channels <= 0:
        raise ValueError(f"input_shape channels must be a positive integer, got {channels!r}")
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    return tuple(input_shape)


def model_input(input_shape, data_format: str, name: str = "image"):
    """The channels-last input and the tensor to compute on in ``data_format``."""
    inputs = keras.Input(shape=tuple(input_shape), name=name)
    if data_format == "channels_first":
        rank = len(input_shape)  # spatial axes and channels
        to_first = (rank, *range(1, rank))
        return inputs, layers.Permute(to_first, name="to_channels_first")(inputs)
    return inputs, inputs


@dataclass
class Encoded:
    """A model's input and its encoder's feature maps, for a decoder to build on.

    Attributes:
        inputs: the channels-last ``keras.Input``.
        features: the encoder's `segkit.encoders.FeatureMaps`.
        encoder: the `segkit.encoders.Encoder` that made them.
        native: whether it is the architecture's own encoder (``encoder=None``).
        data_format: the layout everything computes in.
        spatial_dims: 2 or 3.
    """

    inputs: object
    features: FeatureMaps
    encoder: Encoder
    native: bool
    data_format: str
    spatial_dims: int

    def layers(self, batch_norm: bool = True, kind: type[Layers] = Layers) -> Layers:
        """The N-D layers (``kind``) in this model's dimensions and layout."""
        return kind(self.spatial_dims, self.data_format, batch_norm)

    def widths(self) -> dict[int, int]:
        """``{stride: channels}`` of the feature maps."""
        return dict(
            zip(self.features.strides, self.features.channels(self.data_format), strict=True)
        )

    def decoder_filters(self, stride: int, own: int) -> int:
        """The width of the decoder step that ends at ``stride``: ``own`` over the
        architecture's own encoder, `FOREIGN_DECODER_FILTERS` over any other."""
        return own if self.native else FOREIGN_DECODER_FILTERS.get(stride, 16)


#: Decoder widths by stride over an encoder that is not the architecture's own, as
#: segmentation_models_pytorch's U-Net (256 at stride 16 halving to 16 at stride 1).
FOREIGN_DECODER_FILTERS = {32: 256, 16: 256, 8: 128, 4: 64, 2: 32, 1: 16}


def encode(
    input_shape,
    *,
    depth: int,
    data_format: str | None,
    spatial_dims: int,
    encoder: str | None,
    encoder_weights,
    native: Callable[..., Encoder],
) -> Encoded:
    """Check the input, make the model's input and apply its encoder.

    Args:
        input_shape: channels-last shape without the batch axis.
        depth: the number of downsamplings the decoder undoes.
        data_format: the layout asked for (None: the backend's default).
        spatial_dims: 2 or 3.
        encoder: a registered encoder name, or None for the architecture's own.
        encoder_weights: what the encoder starts from (see `segkit.encoders.get`).
        native: makes the architecture's own encoder from `segkit.encoders.Encoder`'s options.

    Raises:
        ValueError: a bad shape, or weights asked for the architecture's own encoder.
        KeyError: an unknown encoder.
        segkit.encoders.UnsupportedSpatialDims: an encoder without 3-D asked for 3-D.
    """
    input_shape = check_input_shape(input_shape, depth, spatial_dims)
    data_format = resolve_data_format(data_format)
    options = {
        "spatial_dims": spatial_dims,
        "data_format": data_format,
        "input_channels": input_shape[-1],
    }
    if encoder is None:
        if encoder_weights is not None:
            raise ValueError(
                "encoder_weights needs an encoder: the architecture's own encoder starts from "
                "random weights (name one, e.g. encoder='resnet50')"
            )
        made = native(**options)
    else:
        made = encoders.get(encoder, weights=encoder_weights, depth=depth, **options)
    inputs, x = model_input(input_shape, data_format)
    return Encoded(inputs, made(x), made, encoder is None, data_format, spatial_dims)


def finish(encoded: Encoded, outputs, name: str) -> keras.Model:
    """The model from ``encoded``'s input to ``outputs``.

    It carries the encoder's expected input scaling as ``model.segkit_normalize`` (None:
    whatever the data pipeline gives), for training and inference to record and apply.
    """
    model = keras.Model(encoded.inputs, outputs, name=name)
    model.segkit_normalize = encoded.encoder.normalize
    return model


def segmentation_head(
    x,
    num_classes: int,
    data_format: str,
    *,
    name: str = "head",
    upsample: int = 1,
    multilabel: bool = False,
):
    """1x1 convolution to class scores: sigmoid for one class (or for each of several
    overlapping ones, ``multilabel``), softmax over classes otherwise.

    Args:
        x: the features.
        num_classes: output channels.
        data_format: the layout ``x`` is in; the result is always channels-last.
        name: the 1x1 convolution's name; other layers' names derive from it (the main head
            keeps the plain names ``to_channels_last`` and ``probabilities``).
        upsample: bilinear upsampling factor applied to the scores before the activation, so
            probabilities are interpolated logits with smooth edges.
        multilabel: a sigmoid per channel (overlapping regions) instead of a softmax.

    The final activation runs in float32 so mixed-precision models still output exact
    probabilities.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    prefix = "" if name == "head" else f"{name}_"
    build = Layers(len(x.shape) - 2, data_format)
    x = build.conv(x, num_classes, name, kernel=1)
    if upsample > 1:
        x = build.upsample(x, f"{name}_upsample", upsample, interpolation="bilinear")
    if data_format == "channels_first":
        rank = len(x.shape) - 1
        to_last = (*range(2, rank + 1), 1)
        x = layers.Permute(to_last, name=f"{prefix}to_channels_last")(x)
    activation = "sigmoid" if num_classes == 1 or multilabel else "softmax"
    return layers.Activation(activation, dtype="float32", name=f"{prefix}probabilities")(x)
