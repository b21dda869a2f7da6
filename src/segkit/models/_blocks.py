"""Pieces shared by the architectures: input checks, layout handling and the output head.

Every segkit model takes and returns channels-last arrays ``(batch, H, W, C)``, whatever layout
it computes in. With ``data_format="channels_first"`` (the faster layout for torch on CPU) the
model transposes once after the input and once before the output.
"""

from __future__ import annotations

import warnings

import keras
from keras import layers

from segkit import backend

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
        # stacklevel 3: point at whoever called the builder, not at the builder.
        warnings.warn(CHANNELS_FIRST_FALLBACK, UserWarning, stacklevel=3)
        return "channels_last"
    return data_format


def check_input_shape(input_shape, depth: int) -> tuple[int | None, int | None, int]:
    """Validate ``(H, W, C)``: H and W must be divisible by ``2**depth`` (or None)."""
    try:
        height, width, channels = input_shape
    except (TypeError, ValueError):
        raise ValueError(
            f"input_shape must be (height, width, channels), got {input_shape!r}"
        ) from None
    factor = 2**depth
    for axis, size in (("height", height), ("width", width)):
        if size is not None and (size <= 0 or size % factor):
            raise ValueError(
                f"input_shape {axis} {size} must be a positive multiple of {factor} "
                f"(2**depth with depth={depth})"
            )
    if channels is None or channels <= 0:
        raise ValueError(f"input_shape channels must be a positive integer, got {channels!r}")
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    return height, width, channels


def channel_axis(data_format: str) -> int:
    return 1 if data_format == "channels_first" else -1


def double_conv(x, filters: int, data_format: str, batch_norm: bool, name: str):
    """Two 3x3 same-padded convolutions, each followed by (optional BN and) ReLU."""
    for i in (1, 2):
        x = layers.Conv2D(
            filters,
            3,
            padding="same",
            kernel_initializer="he_normal",
            use_bias=not batch_norm,
            data_format=data_format,
            name=f"{name}_conv{i}",
        )(x)
        if batch_norm:
            x = layers.BatchNormalization(axis=channel_axis(data_format), name=f"{name}_bn{i}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return x


class LayerBuilder:
    """A network's layout settings, so its blocks can be written as short methods.

    Subclasses add the convolutions and blocks of one architecture.
    """

    def __init__(self, data_format: str, batch_norm: bool):
        self.data_format = data_format
        self.axis = channel_axis(data_format)
        self.batch_norm = batch_norm

    def norm(self, x, name: str):
        """Batch normalisation over the channel axis, or nothing without ``batch_norm``."""
        if not self.batch_norm:
            return x
        return layers.BatchNormalization(axis=self.axis, name=name)(x)


def model_input(input_shape, data_format: str, name: str = "image"):
    """The channels-last input and the tensor to compute on in ``data_format``."""
    inputs = keras.Input(shape=tuple(input_shape), name=name)
    if data_format == "channels_first":
        return inputs, layers.Permute((3, 1, 2), name="to_channels_first")(inputs)
    return inputs, inputs


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
    x = layers.Conv2D(num_classes, 1, data_format=data_format, name=name)(x)
    if upsample > 1:
        x = layers.UpSampling2D(
            upsample, interpolation="bilinear", data_format=data_format, name=f"{name}_upsample"
        )(x)
    if data_format == "channels_first":
        x = layers.Permute((2, 3, 1), name=f"{prefix}to_channels_last")(x)
    activation = "sigmoid" if num_classes == 1 or multilabel else "softmax"
    return layers.Activation(activation, dtype="float32", name=f"{prefix}probabilities")(x)
