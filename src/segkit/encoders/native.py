"""segkit's own encoders: the contracting halves of the notebook's U-Net, ResUNET and fast_unet.

Each builds in 2-D and 3-D, from random weights, with the layer names its network has always
had, so ``segkit.models.get("unet")`` (this encoder under the U-Net decoder) is still the
notebook's network and the shipped weight files load into it unchanged.
"""

from __future__ import annotations

from keras import layers

from segkit.encoders._base import Encoder
from segkit.encoders._layers import Layers


class UNetEncoder(Encoder):
    """The notebook U-Net's encoder: paired 3x3 convolutions and max pooling; strides 1 to 16.

    Level ``l`` (stride ``2**l``) has ``filters * 2**l`` filters; after ``depth`` poolings a
    bottleneck keeps the deepest level's width (``widen_bottleneck`` doubles it, as the
    attention U-Net does).

    Args:
        filters: filters of the first level.
        depth: number of poolings.
        batch_norm: batch normalisation after each convolution (the notebook has none).
        dropout: dropout after each pooling (0 disables).
        widen_bottleneck: give the bottleneck twice the deepest level's filters.
        layer_names: ``"levels"`` (``down1 .. downN``, ``bottleneck``) or ``"nested"`` (UNet++'s
            ``x00 .. xN0``).
        **options: `segkit.encoders.Encoder`'s.
    """

    spatial_dims_supported = (2, 3)

    def __init__(
        self,
        *,
        filters: int = 32,
        depth: int = 4,
        batch_norm: bool = False,
        dropout: float = 0.4,
        widen_bottleneck: bool = False,
        layer_names: str = "levels",
        **options,
    ):
        super().__init__(depth=depth, **options)
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.filters = filters
        self.batch_norm = batch_norm
        self.dropout = dropout
        self.widen_bottleneck = widen_bottleneck
        self.layer_names = layer_names

    def _names(self, level: int) -> tuple[str, str]:
        """The names of level ``level``'s convolutions and of the pooling after it."""
        if self.layer_names == "nested":
            return f"x{level}0", f"x{level + 1}0_pool"
        block = "bottleneck" if level == self.depth else f"down{level + 1}"
        return block, f"{block}_pool"

    def features(self, x) -> list:
        build = Layers(self.spatial_dims, self.data_format, self.batch_norm)
        maps = []
        for level in range(self.depth + 1):
            block, pool = self._names(level)
            filters = self.filters * 2 ** min(level, self.depth - 1)
            if level == self.depth and self.widen_bottleneck:
                filters = self.filters * 2**self.depth
            x = build.double_conv(x, filters, block)
            maps.append(x)
            if level < self.depth:
                x = build.max_pool(x, pool)
                if self.dropout:
                    x = layers.Dropout(self.dropout, name=f"{block}_dropout")(x)
        return maps


class ResUNetLayers(Layers):
    """ResUNET's units, shared by its encoder and its decoder."""

    def plain_conv(self, x, filters, name, kernel=3, strides=1):
        return self.conv(x, filters, name, kernel=kernel, strides=strides)

    def preact_conv(self, x, filters, name, strides=1):
        """BN -> ReLU -> 3x3 conv: the pre-activation unit of a residual block."""
        x = self.norm(x, f"{name}_bn")
        x = layers.Activation("relu", name=f"{name}_relu")(x)
        return self.plain_conv(x, filters, f"{name}_conv", strides=strides)

    def shortcut(self, x, filters, name, kernel=3, strides=1):
        x = self.plain_conv(x, filters, f"{name}_shortcut", kernel=kernel, strides=strides)
        return self.norm(x, f"{name}_shortcut_bn")

    def stem(self, x, filters, name="stem"):
        residual = self.plain_conv(x, filters, f"{name}_conv")
        residual = self.preact_conv(residual, filters, f"{name}_unit")
        shortcut = self.shortcut(x, filters, name, kernel=1)
        return layers.Add(name=f"{name}_add")([residual, shortcut])

    def residual_block(self, x, filters, name, strides=1):
        residual = self.preact_conv(x, filters, f"{name}_unit1", strides=strides)
        residual = self.preact_conv(residual, filters, f"{name}_unit2")
        shortcut = self.shortcut(x, filters, name, strides=strides)
        return layers.Add(name=f"{name}_add")([residual, shortcut])


class ResUNetEncoder(Encoder):
    """ResUNET's encoder: a residual stem, then pre-activation residual blocks of stride 2.

    Strides 1 to ``2**depth``, ``filters * 2**l`` filters at stride ``2**l``.

    Args:
        filters: filters of the stem.
        depth: number of stride-2 blocks.
        batch_norm: batch normalisation in every unit and shortcut.
        **options: `segkit.encoders.Encoder`'s.
    """

    spatial_dims_supported = (2, 3)

    def __init__(self, *, filters: int = 16, depth: int = 4, batch_norm: bool = True, **options):
        super().__init__(depth=depth, **options)
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.filters = filters
        self.batch_norm = batch_norm

    def features(self, x) -> list:
        build = ResUNetLayers(self.spatial_dims, self.data_format, self.batch_norm)
        maps = [build.stem(x, self.filters)]
        for level in range(1, self.depth + 1):
            filters = self.filters * 2**level
            maps.append(build.residual_block(maps[-1], filters, f"down{level}", strides=2))
        return maps


class FastUNetLayers(Layers):
    """fast_unet's units, shared by its encoder and its decoder."""

    def bn_conv(self, x, filters, name, kernel=3, strides=1):
        # A bias before batch normalisation would be cancelled by its mean subtraction.
        return self.conv(
            x,
            filters,
            name,
            kernel=kernel,
            strides=strides,
            use_bias=not self.batch_norm,
            kernel_initializer="he_normal",
        )

    def conv_bn_relu(self, x, filters, name, strides=1):
        x = self.bn_conv(x, filters, f"{name}_conv", strides=strides)
        x = self.norm(x, f"{name}_bn")
        return layers.Activation("relu", name=f"{name}_relu")(x)

    def residual_block(self, x, filters, name, strides=1):
        """Two 3x3 convs with BN; a strided 1x1 projection shortcut when the shape changes."""
        residual = self.conv_bn_relu(x, filters, f"{name}_unit1", strides=strides)
        residual = self.bn_conv(residual, filters, f"{name}_unit2_conv")
        residual = self.norm(residual, f"{name}_unit2_bn")
        shortcut = x
        if strides != 1 or x.shape[self.axis] != filters:
            shortcut = self.bn_conv(x, filters, f"{name}_shortcut", kernel=1, strides=strides)
            shortcut = self.norm(shortcut, f"{name}_shortcut_bn")
        x = layers.Add(name=f"{name}_add")([residual, shortcut])
        return layers.Activation("relu", name=f"{name}_relu")(x)


class FastUNetEncoder(Encoder):
    """fast_unet's encoder: a stride-2 stem and residual blocks; strides 2 to ``2**depth``.

    Nothing runs at full resolution: the stem is a stride-2 3x3 convolution and a residual
    block (``filters``), and each further level a residual block whose first convolution has
    stride 2 (``filters * 2**l`` at stride ``2**(l + 1)``).

    Args:
        filters: filters of the stem.
        depth: number of x2 downsamplings, the stem's included.
        batch_norm: batch normalisation after every convolution.
        **options: `segkit.encoders.Encoder`'s.
    """

    spatial_dims_supported = (2, 3)

    def __init__(self, *, filters: int = 24, depth: int = 5, batch_norm: bool = True, **options):
        super().__init__(depth=depth, **options)
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.filters = filters
        self.batch_norm = batch_norm

    def features(self, x) -> list:
        build = FastUNetLayers(self.spatial_dims, self.data_format, self.batch_norm)
        x = build.conv_bn_relu(x, self.filters, "stem", strides=2)
        maps = [build.residual_block(x, self.filters, "down1")]
        for level in range(1, self.depth):
            filters = self.filters * 2**level
            maps.append(build.residual_block(maps[-1], filters, f"down{level + 1}", strides=2))
        return maps
