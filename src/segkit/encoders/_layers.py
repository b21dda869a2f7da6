"""Layers in 2-D or 3-D: the one place that picks ``Conv2D`` or ``Conv3D`` from ``spatial_dims``.

Encoders and decoders are written once, for any number of spatial dimensions, against
`Layers`: ``Layers(2, "channels_last").conv(...)`` is a ``Conv2D``, ``Layers(3, ...)`` a
``Conv3D``. The channel axis (for concatenation and batch normalisation) follows the data
format, as it always has for segkit's 2-D networks.
"""

from __future__ import annotations

import keras
from keras import layers, ops

_CONV = {2: layers.Conv2D, 3: layers.Conv3D}
_CONV_TRANSPOSE = {2: layers.Conv2DTranspose, 3: layers.Conv3DTranspose}
_MAX_POOL = {2: layers.MaxPooling2D, 3: layers.MaxPooling3D}
_UPSAMPLE = {2: layers.UpSampling2D, 3: layers.UpSampling3D}


def channel_axis(data_format: str) -> int:
    """The axis of a batch's channels: 1 for ``channels_first``, -1 for ``channels_last``."""
    return 1 if data_format == "channels_first" else -1


def check_spatial_dims(spatial_dims: int) -> int:
    """``spatial_dims`` if it is 2 or 3.

    Raises:
        ValueError: any other value.
    """
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    return spatial_dims


@keras.saving.register_keras_serializable(package="segkit")
class TrilinearUpsampling3D(layers.Layer):
    """Linear upsampling of a 3-D feature map by an integer factor along each spatial axis.

    Keras's ``UpSampling3D`` only repeats voxels; this is the 3-D counterpart of
    ``UpSampling2D(interpolation="bilinear")``: the in-plane axes are resized bilinearly, then
    the depth axis linearly (resizing to an unchanged width samples pixel centres exactly, so
    the second resize only interpolates along depth).
    """

    def __init__(self, size: int = 2, data_format: str = "channels_last", **kwargs):
        super().__init__(**kwargs)
        self.size = int(size)
        self.data_format = data_format

    def call(self, x):
        if self.data_format == "channels_first":
            x = ops.transpose(x, (0, 2, 3, 4, 1))
        shape = ops.shape(x)
        batch, depth, height, width, channels = (shape[i] for i in range(5))
        planes = ops.reshape(x, (-1, height, width, channels))
        planes = ops.image.resize(
            planes, (height * self.size, width * self.size), interpolation="bilinear"
        )
        columns = ops.reshape(planes, (batch, depth, -1, channels))
        area = height * width * self.size * self.size
        columns = ops.image.resize(columns, (depth * self.size, area), interpolation="bilinear")
        x = ops.reshape(
            columns, (batch, depth * self.size, height * self.size, width * self.size, channels)
        )
        if self.data_format == "channels_first":
            x = ops.transpose(x, (0, 4, 1, 2, 3))
        return x

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        first = 2 if self.data_format == "channels_first" else 1
        for axis in range(first, first + 3):
            if shape[axis] is not None:
                shape[axis] *= self.size
        return tuple(shape)

    def get_config(self):
        return {**super().get_config(), "size": self.size, "data_format": self.data_format}


class Layers:
    """A network's layout settings, so its blocks are short methods in any dimension.

    Args:
        spatial_dims: 2 for images, 3 for volumes.
        data_format: ``"channels_last"`` or ``"channels_first"``, as resolved by the model.
        batch_norm: whether `norm` adds batch normalisation.
    """

    def __init__(self, spatial_dims: int, data_format: str, batch_norm: bool = True):
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.data_format = data_format
        self.axis = channel_axis(data_format)
        self.batch_norm = batch_norm

    def conv(self, x, filters: int, name: str, kernel: int = 3, strides: int = 1, **options):
        """A same-padded convolution (``Conv2D`` or ``Conv3D``); ``options`` go to the layer."""
        return _CONV[self.spatial_dims](
            filters,
            kernel,
            strides=strides,
            padding="same",
            data_format=self.data_format,
            name=name,
            **options,
        )(x)

    def conv_transpose(self, x, filters: int, name: str, kernel: int = 3, strides: int = 2):
        return _CONV_TRANSPOSE[self.spatial_dims](
            filters,
            kernel,
            strides=strides,
            padding="same",
            data_format=self.data_format,
            name=name,
        )(x)

    def max_pool(self, x, name: str, size: int = 2):
        return _MAX_POOL[self.spatial_dims](size, data_format=self.data_format, name=name)(x)

    def upsample(self, x, name: str, size: int = 2, interpolation: str = "nearest"):
        """Upsampling by ``size``: ``"nearest"`` repeats, ``"bilinear"`` interpolates linearly
        (trilinearly in 3-D)."""
        if interpolation == "nearest":
            return _UPSAMPLE[self.spatial_dims](size, data_format=self.data_format, name=name)(x)
        if self.spatial_dims == 2:
            return layers.UpSampling2D(
                size, interpolation=interpolation, data_format=self.data_format, name=name
            )(x)
        return TrilinearUpsampling3D(size, data_format=self.data_format, name=name)(x)

    def norm(self, x, name: str):
        """Batch normalisation over the channel axis, or nothing without ``batch_norm``."""
        if not self.batch_norm:
            return x
        return layers.BatchNormalization(axis=self.axis, name=name)(x)

    def concat(self, tensors, name: str):
        return layers.Concatenate(axis=self.axis, name=name)(tensors)

    def double_conv(self, x, filters: int, name: str):
        """Two 3x3 same-padded convolutions, each followed by (optional BN and) ReLU."""
        for i in (1, 2):
            x = self.conv(
                x,
                filters,
                f"{name}_conv{i}",
                kernel_initializer="he_normal",
                use_bias=not self.batch_norm,
            )
            x = self.norm(x, f"{name}_bn{i}")
            x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
        return x
