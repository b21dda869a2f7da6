"""Encoders, found by name: the contracting half of a segmentation network.

An encoder maps an image (or volume) to feature maps at strides read from their shapes; any
decoder in `segkit.models` builds over any encoder:

```python
import segkit
segkit.encoders.list("resnet*")
segkit.models.get("unet", encoder="resnet50", encoder_weights=None, input_shape=(256, 256, 1))
```

Third-party packages add encoders through the ``segkit.encoders`` entry-point group: an entry
point names an `Encoder` subclass (or a function returning an `Encoder`), or a module whose
import registers its encoders with `register`.
"""

from __future__ import annotations

import builtins
import inspect
from collections.abc import Callable

from segkit._plugins import Registry
from segkit.backend import require_backend

require_backend()

from segkit.encoders import applications, native  # noqa: E402
from segkit.encoders._base import Encoder, FeatureMaps, UnsupportedSpatialDims  # noqa: E402

ENTRY_POINT_GROUP = "segkit.encoders"

_encoders = Registry("encoder", "encoders", ENTRY_POINT_GROUP)


def register(name: str | None = None) -> Callable[[Callable], Callable]:
    """Decorator that registers an `Encoder` subclass (or a function returning an encoder).

    Raises:
        ValueError: if the name is already taken.
    """
    return _encoders.register(name)


def list(pattern: str = "*") -> builtins.list[str]:  # noqa: A001  (mirrors segkit.models.list)
    """Sorted names of the registered encoders matching a shell-style wildcard ``pattern``."""
    return _encoders.names(pattern)


def describe(name: str) -> str:
    """First line of the encoder's docstring."""
    doc = inspect.getdoc(_encoders.lookup(name)) or ""
    return doc.splitlines()[0] if doc else ""


def get(name: str, **options) -> Encoder:
    """The encoder registered as ``name``, made with ``options``.

    Args:
        name: a registered encoder name, e.g. ``"unet"`` or ``"resnet50"``.
        **options: `Encoder`'s (``spatial_dims``, ``data_format``, ``input_channels``,
            ``weights``, ``depth``) and the family's own.

    Raises:
        KeyError: an unknown name, with the closest registered names.
        UnsupportedSpatialDims: a family asked for dimensions it cannot build.
    """
    entry = _encoders.lookup(name)
    spatial_dims = options.get("spatial_dims", 2)
    supported = getattr(entry, "spatial_dims_supported", (2,))
    if spatial_dims not in supported:
        raise UnsupportedSpatialDims(
            f"encoder {name!r} builds in {' or '.join(map(str, supported))}-D only, not in "
            f"{spatial_dims}-D; encoders that build in 3-D: "
            f"{', '.join(n for n in list() if supports_3d(n))}"
        )
    encoder = entry(**options)
    if not isinstance(encoder, Encoder):
        raise TypeError(f"encoder {name!r} made a {type(encoder).__name__}, not an Encoder")
    encoder.name = name
    return encoder


def supports_3d(name: str) -> bool:
    """Whether the encoder registered as ``name`` builds in 3-D."""
    entry = _encoders.lookup(name)
    return 3 in getattr(entry, "spatial_dims_supported", (2,))


def describe_weights(name: str) -> str:
    """What the encoder registered as ``name`` can start from, offline first, in a few words."""
    entry = _encoders.lookup(name)
    if isinstance(entry, type) and issubclass(entry, applications.ApplicationEncoder):
        return "weights: none or a local file offline; imagenet when online"
    return "weights: none (random)"


def summary(name: str, spatial_dims: int = 2) -> str:
    """The strides, channels and parameters of the encoder ``name`` on a 64-pixel probe,
    read from the built tensors."""
    import keras

    encoder = get(name, spatial_dims=spatial_dims, input_channels=1, data_format="channels_last")
    inputs = keras.Input((64,) * spatial_dims + (1,))
    features = encoder(inputs)
    probe = keras.Model(inputs, builtins.list(features.maps.values()))
    pairs = zip(features.strides, features.channels("channels_last"), strict=True)
    return (
        "strides/channels "
        + " ".join(f"{stride}:{channels}" for stride, channels in pairs)
        + f", {probe.count_params():,} parameters"
    )


register("unet")(native.UNetEncoder)
register("resunet")(native.ResUNetEncoder)
register("fast_unet")(native.FastUNetEncoder)
applications.register_all(_encoders)

__all__ = [
    "Encoder",
    "FeatureMaps",
    "UnsupportedSpatialDims",
    "describe",
    "describe_weights",
    "get",
    "list",
    "register",
    "summary",
    "supports_3d",
]
