"""The registry of architectures: plain builder functions, found by name.

Builders register in-process with `register`; third-party packages add theirs through the
``segkit.models`` entry-point group, loaded the first time the registry is asked anything.
segkit's own architectures are listed in `BUILTINS` and imported (with Keras) only when one is
first built, so listing and describing them imports no backend.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable

from segkit._plugins import Registry
from segkit.backend import require_backend

ENTRY_POINT_GROUP = "segkit.models"

#: segkit's architectures: name -> (module registering the builder, its docstring's first line,
#: which `describe` gives without importing the module; a test keeps the two the same).
BUILTINS = {
    "attention_unet": (
        "segkit.models.attention_unet",
        "Attention U-Net: a U-Net with additive attention gates on its skips, 2.0M parameters.",
    ),
    "fast_unet": (
        "segkit.models.fast_unet",
        "Fast U-Net: stride-2 stem, residual encoder, light decoder; 2.8 GFLOPs at 256x256.",
    ),
    "resunet": (
        "segkit.models.resunet",
        "Residual U-Net: pre-activation residual blocks, strided downsampling, 6.3M parameters.",
    ),
    "unet": (
        "segkit.models.unet",
        "U-Net: four down and up blocks of paired 3x3 convs, 5.7M parameters (the notebook's).",
    ),
    "unet_plus_plus": (
        "segkit.models.unet_plus_plus",
        "UNet++: nested, densely connected skip pathways between encoder and decoder, 2.3M params.",
    ),
}

_builders = Registry("model", "models", ENTRY_POINT_GROUP, builtins=BUILTINS)


def register(name: str | None = None) -> Callable[[Callable], Callable]:
    """Decorator that registers a model builder under ``name`` (default: the function's name).

    A builder is a function taking keyword config arguments and returning a ``keras.Model``.
    Its docstring's first line is the description shown by ``segkit models``.

    Raises:
        ValueError: if the name is already taken.
    """
    return _builders.register(name)


def list(pattern: str = "*") -> builtins.list[str]:  # noqa: A001  (mirrors timm's list_models)
    """Sorted names of the registered models matching a shell-style wildcard ``pattern``."""
    return _builders.names(pattern)


def builder(name: str) -> Callable:
    """The builder function registered as ``name``.

    Raises:
        KeyError: for an unknown name, listing the closest registered names.
        ImportError: a built-in architecture, with no Keras backend installed.
    """
    if name in BUILTINS:
        require_backend()  # before the builder's module imports Keras
    return _builders.lookup(name)


def describe(name: str) -> str:
    """First line of the builder's docstring: a one-line description of the model."""
    return _builders.describe(name)


def split_name(name: str) -> tuple[str, str | None]:
    """Split ``"resunet.figshare"`` into ``("resunet", "figshare")``; a bare name has no tag."""
    model, _, tag = name.partition(".")
    return model, (tag or None)
