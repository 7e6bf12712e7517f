"""A name → class registry so configs can say ``loss: reot`` instead of import paths (timm style)."""
from __future__ import annotations

from typing import Any, Callable, Dict, Generic, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps lower-case names to classes or factories.

    >>> LOSSES = Registry("loss")
    >>> @LOSSES.register("ce")
    ... class CE: ...
    >>> LOSSES.get("CE") is CE
    True
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: Dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        key = name.lower()

        def decorator(obj: T) -> T:
            if key in self._items and self._items[key] is not obj:
                raise ValueError(f"{self.kind} '{name}' is already registered to {self._items[key]!r}")
            self._items[key] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        key = name.lower()
        if key not in self._items:
            raise KeyError(f"unknown {self.kind} '{name}'; choose one of: {', '.join(sorted(self._items))}")
        return self._items[key]

    def build(self, name: str, **kwargs: Any) -> Any:
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
