"""One generic name -> object registry (methods, baselines, tasks, metrics, zoo models).

Names are snake_case; lookups also accept hyphens (`llm-pruner` == `llm_pruner`). An unknown name
raises ConfigError listing the valid ones, with a did-you-mean suggestion.
"""
from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

from .errors import ConfigError

T = TypeVar("T")


def canonical(name: str) -> str:
    return name.strip().replace("-", "_").lower()


class Registry(Generic[T]):
    def __init__(self, kind: str, loader: Callable[[], None] | None = None):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._loader = loader  # imports the modules that register into this registry
        self._loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        key = canonical(name)

        def deco(obj: T) -> T:
            if key in self._items and self._items[key] is not obj:
                raise ValueError(f"{self.kind} {key!r} registered twice")
            self._items[key] = obj
            return obj

        return deco

    def _ensure(self) -> None:
        if not self._loaded and self._loader is not None:
            self._loaded = True
            self._loader()

    def get(self, name: str) -> T:
        self._ensure()
        key = canonical(name)
        if key not in self._items:
            valid = sorted(self._items)
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown {self.kind} {name!r}{hint}; valid: {', '.join(valid) or '(none)'}")
        return self._items[key]

    def names(self) -> list[str]:
        self._ensure()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        self._ensure()
        return canonical(name) in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
