"""One instance per process, made on first use: in Lambda once per container, outside any request (cold starts
stay cheap and SnapStart's hook can warm it); tests replace it with `reset`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Lazy(Generic[T]):
    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._value: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        value = self._value
        if value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._factory()
                value = self._value
        return value

    def reset(self, value: T | None = None) -> None:
        with self._lock:
            self._value = value
