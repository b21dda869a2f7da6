"""The registry of architectures: plain builder functions, found by name.

Builders register in-process with `register`; third-party packages add theirs through the
``segkit.models`` entry-point group, loaded the first time the registry is asked anything.
"""

from __future__ import annotations

import builtins
import inspect
from collections.abc import Callable

from segkit._plugins import Registry

ENTRY_POINT_GROUP = "segkit.models"

_builders = Registry("model", "models", ENTRY_POINT_GROUP)


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
    """
    return _builders.lookup(name)


def describe(name: str) -> str:
    """First line of the builder's docstring: a one-line description of the model."""
    doc = inspect.getdoc(builder(name)) or ""
    return doc.splitlines()[0] if doc else ""


def split_name(name: str) -> tuple[str, str | None]:
    """Split ``"resunet.figshare"`` into ``("resunet", "figshare")``; a bare name has no tag."""
    model, _, tag = name.partition(".")
    return model, (tag or None)
