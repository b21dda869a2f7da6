"""Count the floating-point operations of a model's forward pass, per image.

Only the layers that dominate a segmentation network are counted: ``Conv2D``,
``Conv2DTranspose`` and ``Dense``. One multiply-add counts as two FLOPs, the convention of
papers that quote "GFLOPs" (23.9 GFLOPs for the notebook's 256x256 U-Net is 11.95 G
multiply-adds). Normalisation, activations, pooling, upsampling and additions are left out:
together they are a few percent of the total for these models.

```python
from segkit.models.flops import count_flops
count_flops(segkit.models.get("unet")) / 1e9  # 23.9
```
"""

from __future__ import annotations

import math

import keras
from keras import layers


def _spatial_size(shape, data_format: str) -> int:
    """Number of positions of a 4-D conv tensor shape, batch excluded."""
    height, width = shape[2:4] if data_format == "channels_first" else shape[1:3]
    if height is None or width is None:
        raise ValueError(f"cannot count FLOPs with an unknown spatial size: {shape}")
    return height * width


def _channels(shape, data_format: str) -> int:
    return shape[1] if data_format == "channels_first" else shape[-1]


def layer_flops(layer: keras.layers.Layer) -> int:
    """Forward FLOPs of one layer for one image (0 for layers that are not counted)."""
    if isinstance(layer, layers.Conv2DTranspose):
        # Every input pixel scatters a k_h x k_w x C_out patch: the work scales with the
        # input's size, not the (stride**2 larger) output's.
        positions = _spatial_size(layer.input.shape, layer.data_format)
        kernel_h, kernel_w = layer.kernel_size
        c_in = _channels(layer.input.shape, layer.data_format)
        return 2 * positions * kernel_h * kernel_w * c_in * layer.filters
    if isinstance(layer, layers.Conv2D):
        positions = _spatial_size(layer.output.shape, layer.data_format)
        kernel_h, kernel_w = layer.kernel_size
        c_in = _channels(layer.input.shape, layer.data_format)
        return 2 * positions * kernel_h * kernel_w * c_in * layer.filters // layer.groups
    if isinstance(layer, layers.Dense):
        # A Dense layer on an (N, ..., C) tensor applies its matrix at every leading position.
        positions = math.prod(layer.input.shape[1:-1])
        return 2 * positions * layer.input.shape[-1] * layer.units
    return 0


def count_flops(model: keras.Model) -> int:
    """Forward-pass FLOPs for one image (2 per multiply-add) of a built functional model.

    Nested models are walked into. Spatial sizes come from the model's input shape, so it must
    be fixed (no ``None`` height or width).

    Args:
        model: a functional ``keras.Model``, e.g. from `segkit.models.get`.

    Returns:
        The FLOP count as an integer; divide by ``1e9`` for GFLOPs.

    Raises:
        ValueError: a counted layer has an unknown spatial size.
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += count_flops(layer)
        else:
            total += layer_flops(layer)
    return total
