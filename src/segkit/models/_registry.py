"""The registry of architectures: plain builder functions, found by name.

Builders register in-process with `register`; third-party packages add theirs through the
``segkit.models`` entry-point group, loaded the first time the registry is asked anything.
"""

from __future__ import annotations

import builtins
import difflib
import fnmatch
import inspect
import warnings
from collections.abc import Callable
from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "segkit.models"

_builders: dict[str, Callable] = {}
_plugins_loaded = False


def register(name: str | None = None) -> Callable[[Callable], Callable]:
    """Decorator that registers a model builder under ``name`` (default: the function's name).

    A builder is a function taking keyword config arguments and returning a ``keras.Model``.
    Its docstring's first line is the description shown by ``segkit models``.

    Raises:
        ValueError: if the name is already taken.
    """

    def decorator(builder: Callable) -> Callable:
        key = name or builder.__name__
        if key in _builders and _builders[key] is not builder:
            existing = _builders[key]
            raise ValueError(
                f"model name {key!r} is already registered by "
                f"{existing.__module__}.{existing.__qualname__}; choose another name"
            )
        _builders[key] = builder
        return builder

    return decorator


def _load_plugins() -> None:
    """Import every ``segkit.models`` entry point once; a broken plugin only warns."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = entry.load()
        except Exception as exc:  # a plugin's failure must not take the registry down
            warnings.warn(
                f"segkit: model plugin {entry.name!r} ({entry.value}) failed to load and is "
                f"skipped: {type(exc).__name__}: {exc}",
                RuntimeWarning,
                stacklevel=3,
            )
            continue
        # An entry point names either a builder function or a module whose import registers.
        if callable(loaded) and not inspect.ismodule(loaded):
            if entry.name in _builders and _builders[entry.name] is not loaded:
                warnings.warn(
                    f"segkit: model plugin {entry.name!r} ({entry.value}) is skipped: the name "
                    "is already registered",
                    RuntimeWarning,
                    stacklevel=3,
                )
                continue
            _builders[entry.name] = loaded


def list(pattern: str = "*") -> builtins.list[str]:  # noqa: A001  (mirrors timm's list_models)
    """Sorted names of the registered models matching a shell-style wildcard ``pattern``."""
    _load_plugins()
    return sorted(n for n in _builders if fnmatch.fnmatchcase(n, pattern))


def builder(name: str) -> Callable:
    """The builder function registered as ``name``.

    Raises:
        KeyError: for an unknown name, listing the closest registered names.
    """
    _load_plugins()
    try:
        return _builders[name]
    except KeyError:
        close = difflib.get_close_matches(name, _builders, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise KeyError(
            f"unknown model {name!r}.{hint} Registered models: {', '.join(list())}"
        ) from None


def describe(name: str) -> str:
    """First line of the builder's docstring: a one-line description of the model."""
    doc = inspect.getdoc(builder(name)) or ""
    return doc.splitlines()[0] if doc else ""


def split_name(name: str) -> tuple[str, str | None]:
    """Split ``"resunet.figshare"`` into ``("resunet", "figshare")``; a bare name has no tag."""
    model, _, tag = name.partition(".")
    return model, (tag or None)
