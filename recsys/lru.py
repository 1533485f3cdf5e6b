"""A small thread-safe LRU map bounded by entries and by bytes: the service's result cache."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class LRU(Generic[V]):
    """At most ``size`` entries and, with ``max_bytes``, at most that many bytes as ``weigh`` estimates them; least
    recently used dropped first. ``size`` 0 keeps nothing; a value heavier than ``max_bytes`` is not kept."""

    def __init__(self, size: int, *, max_bytes: int = 0, weigh: Callable[[V], int] | None = None) -> None:
        self.size = size
        self.max_bytes = max_bytes
        self.weigh = weigh if max_bytes > 0 else None
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._data: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return entry[0]

    def has(self, key: Hashable) -> bool:
        """Whether ``key`` is kept (neither a hit nor a use)."""
        with self._lock:
            return key in self._data

    def put(self, key: Hashable, value: V) -> None:
        if self.size <= 0:
            return
        weight = self.weigh(value) if self.weigh is not None else 0
        if self.weigh is not None and weight > self.max_bytes:
            return
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            self._data[key] = (value, weight)
            self.bytes += weight
            while len(self._data) > self.size or (self.weigh is not None and self.bytes > self.max_bytes):
                self.bytes -= self._data.popitem(last=False)[1][1]

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.bytes = 0

    def __len__(self) -> int:
        return len(self._data)
