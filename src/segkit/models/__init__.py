"""Segmentation architectures, found by name.

```python
import segkit
model = segkit.models.get("unet", input_shape=(128, 128, 1))
segkit.models.list("*unet*")
```
"""

from __future__ import annotations

import inspect

from segkit.backend import require_backend

require_backend()

import keras

# Importing the architectures registers their builders; pretrained holds the shipped weights.
from segkit.models import attention_unet, fast_unet, pretrained, resunet, unet, unet_plus_plus  # noqa: F401, I001
from segkit.models._registry import builder, describe, register, split_name
from segkit.models._registry import list as list  # noqa: PLW0127  (public name shadows builtin)


def get(name: str, *, weights: str | None = None, **config) -> keras.Model:
    """Build the model registered as ``name`` with keyword ``config``.

    Args:
        name: a registered name, optionally with a weights tag: ``"resunet"`` or
            ``"resunet.figshare"``.
        weights: tag of shipped trained weights to load (e.g. ``"figshare"``); see
            `segkit.models.pretrained.available`. Same as the name's tag.
        **config: the builder's arguments (``input_shape``, ``num_classes``, ...).

    Raises:
        KeyError: unknown model name or weights tag (the message lists what exists).
        ValueError: config the builder rejects.
    """
    model_name, tag = split_name(name)
    if tag and weights and tag != weights:
        raise ValueError(f"conflicting weights tags: {tag!r} in the name, {weights!r} given")
    weights = weights or tag
    if weights is None:
        build = builder(model_name)
        try:
            inspect.signature(build).bind(**config)
        except TypeError:
            accepted = [*inspect.signature(build).parameters]  # `list` is the registry's here
            unknown = ", ".join(sorted(set(config) - set(accepted)))
            raise ValueError(
                f"model {model_name!r} does not take {unknown}; it takes {', '.join(accepted)}"
            ) from None
        return build(**config)
    return pretrained.load_pretrained(model_name, weights, **config)


__all__ = ["get", "list", "register", "describe", "builder"]
