"""Name -> object registries for algorithms, datasets and sketches.

Built-in entries register themselves when their module is imported; third-party entries are
found through Python entry points (group ``nlt.algorithms`` for algorithms, ``nlt.datasets`` and
``nlt.sketches`` likewise), loaded the first time a registry is read.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from harness.errors import unknown

T = TypeVar("T")
log = logging.getLogger(__name__)


class Registry(Generic[T]):
    """A dict of named plugins with lazy discovery of built-ins and entry points.

    Example
    -------
    >>> from algorithms import ALGORITHMS
    >>> ALGORITHMS.get("gn_gram").name
    'gn_gram'
    """

    def __init__(self, kind: str, builtin_package: str, entry_point_group: str):
        self.kind = kind
        self._builtin_package = builtin_package
        self._group = entry_point_group
        self._items: dict[str, T] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        importlib.import_module(self._builtin_package)
        for ep in entry_points(group=self._group):
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plugin must not take the harness down
                log.warning("could not load %s plugin %r: %s", self.kind, ep.name, exc)
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
