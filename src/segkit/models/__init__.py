"""Segmentation architectures, found by name.

```python
import segkit
model = segkit.models.get("unet", input_shape=(128, 128, 1))
segkit.models.list("*unet*")
```
"""

from __future__ import annotations

import importlib
import inspect
from typing import TYPE_CHECKING

# The architectures (and Keras) are imported when one is first built (`_registry.BUILTINS`),
# so that listing them is quick; pretrained holds the shipped weights and imports no backend.
from segkit.models import pretrained
from segkit.models._registry import BUILTINS, builder, describe, register, split_name
from segkit.models._registry import list as list  # noqa: PLW0127  (public name shadows builtin)

if TYPE_CHECKING:
    import keras


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


def __getattr__(name: str):
    # ``segkit.models.unet`` and the like, as before their import became lazy.
    if name in BUILTINS or name in ("flops", "layout"):
        return importlib.import_module(f"segkit.models.{name}")
    raise AttributeError(f"module 'segkit.models' has no attribute {name!r}")


__all__ = ["get", "list", "register", "describe", "builder"]
