"""What an encoder is: a map from an image to feature maps at known strides.

An `Encoder` builds its layers on a tensor and returns its feature maps, shallowest first. It
never states their strides or widths itself: `Encoder.__call__` reads them from the tensors'
shapes (a stride is the input's size over the map's size), so a family that names its maps
loosely (keras-hub's MiT calls its stride-4 map ``P1``) cannot mislead a decoder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras

from segkit.encoders._layers import channel_axis, check_spatial_dims


class UnsupportedSpatialDims(ValueError):
    """An encoder asked for a number of spatial dimensions it cannot build (2-D only in 3-D)."""


@dataclass(frozen=True)
class FeatureMaps:
    """An encoder's feature maps on one input, keyed by stride.

    Attributes:
        maps: ``{stride: tensor}``, shallowest (smallest stride) first.
        input: the tensor the encoder was applied to.
    """

    maps: dict
    input: object

    @property
    def strides(self) -> list[int]:
        return list(self.maps)

    def channels(self, data_format: str) -> list[int]:
        """Each map's channel count, read from its shape."""
        return [int(t.shape[channel_axis(data_format)]) for t in self.maps.values()]

    @property
    def deepest(self) -> int:
        return max(self.maps)


class Encoder:
    """Base class of encoders: subclasses implement `features`.

    Args:
        spatial_dims: 2 for images, 3 for volumes.
        data_format: the layout of the tensor the encoder is applied to.
        input_channels: channels of the input (a pretrained stem is adapted to them).
        weights: what to start from; each family says what it takes (None: random).
        depth: use the maps up to stride ``2**depth``; None: all of them.

    Raises:
        UnsupportedSpatialDims: ``spatial_dims`` this family cannot build.
    """

    #: The spatial dimensions this family builds in.
    spatial_dims_supported: tuple[int, ...] = (2,)
    #: How inputs must be scaled before the encoder sees them, for ``segkit.data``'s
    #: ``Preprocessing.normalize``; None: the family takes whatever the data pipeline gives.
    normalize: str | None = None

    def __init__(
        self,
        *,
        spatial_dims: int = 2,
        data_format: str = "channels_last",
        input_channels: int = 1,
        weights=None,
        depth: int | None = None,
    ):
        self.name = type(self).__name__
        self.spatial_dims = check_spatial_dims(spatial_dims)
        if spatial_dims not in self.spatial_dims_supported:
            supported = " or ".join(map(str, self.spatial_dims_supported))
            raise UnsupportedSpatialDims(
                f"encoder {self.name!r} builds in {supported}-D only, not in {spatial_dims}-D"
            )
        self.data_format = data_format
        self.input_channels = input_channels
        self.weights = weights
        self.depth = depth

    def features(self, x) -> list:
        """Build the encoder on ``x`` and return its feature maps, shallowest first."""
        raise NotImplementedError

    def probe_size(self) -> int:
        """A spatial size every stride of this encoder divides, for reading strides."""
        return max(64, 2 ** (self.depth or 5))

    def __call__(self, x) -> FeatureMaps:
        """Apply the encoder to ``x``; strides are read from the maps' shapes.

        Raises:
            ValueError: maps whose sizes are not the input's over a power of two, equal on
                every axis, or two maps at one stride.
        """
        maps = self.features(x)
        spatial = _spatial_shape(x, self.data_format)
        if any(size is None for size in spatial):
            # Sizes unknown until run time: read the strides on a probe input of known size.
            size = self.probe_size()
            probe = keras.Input(
                shape=_shape(self.spatial_dims, size, self.input_channels, self.data_format)
            )
            strides = [_stride(probe, m, self.data_format) for m in self.features(probe)]
        else:
            strides = [_stride(x, m, self.data_format) for m in maps]
        by_stride = {}
        for stride, tensor in sorted(zip(strides, maps, strict=True), key=lambda p: p[0]):
            if stride in by_stride:
                raise ValueError(f"encoder {self.name!r} gives two maps at stride {stride}")
            if self.depth is None or stride <= 2**self.depth:
                by_stride[stride] = tensor
        return FeatureMaps(by_stride, x)


def _shape(spatial_dims, size, channels, data_format):
    if data_format == "channels_first":
        return (channels, *[size] * spatial_dims)
    return (*[size] * spatial_dims, channels)


def _spatial_shape(tensor, data_format):
    shape = tuple(tensor.shape)
    return shape[2:] if data_format == "channels_first" else shape[1:-1]


def _stride(inputs, feature_map, data_format) -> int:
    sizes = _spatial_shape(inputs, data_format)
    map_sizes = _spatial_shape(feature_map, data_format)
    ratios = {size / map_size for size, map_size in zip(sizes, map_sizes, strict=True)}
    stride = ratios.pop() if len(ratios) == 1 else None
    if stride is None or stride < 1 or not math.log2(stride).is_integer():
        raise ValueError(
            f"a feature map of spatial size {map_sizes} is not the input's {sizes} over one "
            "power of two"
        )
    return int(stride)
