"""Named things that users and other packages can add to: model builders, losses.

A `Registry` holds callables by name. They register in-process with a decorator, or from an
installed package through an entry-point group, loaded the first time the registry is asked
anything. A broken plugin only warns: one package's failure must not take segkit down.

segkit's own entries are *built-ins*: known by name, module and one-line description before
their module is imported, and imported (registering themselves) when first looked up. Listing
and describing them so imports no deep-learning backend: ``segkit models`` answers at once.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import importlib.metadata
import inspect
import warnings
from collections.abc import Callable, Mapping


class Registry:
    """Callables by name, with plugins from the entry-point group ``group``.

    Args:
        kind: what an entry is, for messages (``"model"``, ``"loss"``).
        kinds: the plural, for messages (``"models"``, ``"losses"``).
        group: the entry-point group plugins register in.
        check: called as ``check(name, entry)`` before an entry is added; raises ValueError to
            refuse it.
        builtins: segkit's own entries as ``{name: (module, description)}``: the module
            registers the entry under that name when imported, which `lookup` does on first
            use; `names` and `describe` answer without importing it.
    """

    def __init__(
        self,
        kind: str,
        kinds: str,
        group: str,
        check: Callable[[str, Callable], None] | None = None,
        builtins: Mapping[str, tuple[str, str]] | None = None,
    ):
        self.kind = kind
        self.kinds = kinds
        self.group = group
        self.check = check
        self.builtins = dict(builtins or {})
        self.entries: dict[str, Callable] = {}
        self.plugins_loaded = False

    def register(self, name: str | None = None) -> Callable[[Callable], Callable]:
        """Decorator that adds its function or class under ``name`` (default: its ``__name__``).

        Raises:
            ValueError: the name is taken, or ``check`` refuses the entry.
        """

        def decorator(entry: Callable) -> Callable:
            self.add(name or entry.__name__, entry)
            return entry

        return decorator

    def add(self, name: str, entry: Callable) -> None:
        builtin = self.builtins.get(name)
        if builtin is not None and entry.__module__ != builtin[0]:  # taken, imported or not
            raise ValueError(
                f"{self.kind} name {name!r} is already registered by {builtin[0]}; "
                "choose another name"
            )
        existing = self.entries.get(name)
        if existing is not None and existing is not entry:
            raise ValueError(
                f"{self.kind} name {name!r} is already registered by "
                f"{existing.__module__}.{existing.__qualname__}; choose another name"
            )
        if self.check is not None:
            self.check(name, entry)
        self.entries[name] = entry

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted names matching a shell-style wildcard ``pattern``."""
        self.load_plugins()
        every = {*self.builtins, *self.entries}
        return sorted(n for n in every if fnmatch.fnmatchcase(n, pattern))

    def lookup(self, name: str) -> Callable:
        """The entry registered as ``name``.

        Raises:
            KeyError: for an unknown name, listing the closest and all registered names.
        """
        self.load_plugins()
        if name in self.builtins and name not in self.entries:
            importlib.import_module(self.builtins[name][0])  # registers it
        try:
            return self.entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, self.names(), n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise KeyError(
                f"unknown {self.kind} {name!r}.{hint} Registered {self.kinds}: "
                f"{', '.join(self.names())}"
            ) from None

    def describe(self, name: str) -> str:
        """One line about the entry: a built-in's description (without importing it), else
        the first line of the entry's docstring.

        Raises:
            KeyError: for an unknown name, as `lookup`.
        """
        if name in self.builtins:
            return self.builtins[name][1]
        doc = inspect.getdoc(self.lookup(name)) or ""
        return doc.splitlines()[0] if doc else ""

    def load_plugins(self) -> None:
        """Load every entry point of the group once; a broken plugin warns and is skipped.

        An entry point names a function or class to add under the entry point's name, or a
        module whose import registers its entries.
        """
        if self.plugins_loaded:
            return
        self.plugins_loaded = True
        for entry in importlib.metadata.entry_points(group=self.group):
            try:
                loaded = entry.load()
                if not inspect.ismodule(loaded):
                    if not callable(loaded):
                        raise TypeError("it names neither a function, a class nor a module")
                    self.add(entry.name, loaded)
            except Exception as exc:  # a plugin's failure must not take the registry down
                warnings.warn(
                    f"segkit: {self.kind} plugin {entry.name!r} ({entry.value}) is skipped: "
                    f"{type(exc).__name__}: {exc}",
                    RuntimeWarning,
                    stacklevel=3,
                )
