"""One registry mechanism for every kind of plugin: methods, sketches, datasets and models.

A plugin is a class with a ``name``. Built-in plugins register themselves with the registry's
decorator when their module is imported (``@register`` in ``algorithms``, ``@register_sketch``,
``@register_dataset``, ``@register_model``); third-party plugins are classes named by a Python
entry point in the registry's group (``nlt.algorithms``, ``nlt.sketches``, ``nlt.datasets``,
``nlt.models``), loaded the first time a registry is read. The entry point's name must be the
class's ``name``.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from harness.common.errors import unknown

T = TypeVar("T")
log = logging.getLogger(__name__)

#: Entry-point groups of the four kinds of plugin, by registry kind.
GROUPS = {"algorithm": "nlt.algorithms", "sketch": "nlt.sketches", "dataset": "nlt.datasets",
          "model": "nlt.models"}


class Registry(Generic[T]):
    """A dict of named plugin classes with lazy discovery of built-ins and entry points.

    Example
    -------
    >>> from algorithms import ALGORITHMS
    >>> ALGORITHMS.get("gn_gram").name
    'gn_gram'
    """

    def __init__(self, kind: str, builtin_package: str, entry_point_group: str | None = None):
        self.kind = kind
        self._builtin_package = builtin_package
        self.group = entry_point_group or GROUPS[kind]
        self._items: dict[str, T] = {}
        self._loaded = False

    def register(self, cls: T) -> T:
        """Class decorator: add ``cls`` under ``cls.name``."""
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"a {self.kind} plugin needs a string class attribute 'name', "
                            f"{cls!r} has {name!r}")
        if name in self._items and self._items[name] is not cls:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = cls
        return cls

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        importlib.import_module(self._builtin_package)
        for ep in entry_points(group=self.group):
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plugin must not take the harness down
                log.warning("could not load %s plugin %r: %s", self.kind, ep.name, exc)
                continue
            name = getattr(obj, "name", None)
            if name != ep.name:
                log.warning("%s plugin %r (entry point %s) has name %r: not registered; the "
                            "entry point's name must be the class's name", self.kind, ep.name,
                            ep.value, name)
                continue
            self._items.setdefault(ep.name, obj)

    def get(self, name: str) -> T:
        self._load()
        if name not in self._items:
            raise unknown(self.kind, name, self._items)
        return self._items[name]

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
