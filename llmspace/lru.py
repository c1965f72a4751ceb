"""A dict that keeps at most ``maxsize`` entries, dropping the least recently used.

For caches keyed by what clients send (index names, model names): without a
bound, each new key would keep a loaded index or model in memory for good.
Not locked: callers that share one across threads hold their own lock.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LRU(OrderedDict, Generic[K, V]):
    def __init__(self, maxsize: int, on_evict: Callable[[K, V], None] | None = None):
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, got {maxsize}")
        super().__init__()
        self.maxsize = maxsize
        self.on_evict = on_evict

    def __getitem__(self, key: K) -> V:
        value = super().__getitem__(key)
        self.move_to_end(key)
        return value

    def get(self, key: K, default=None):
        return self[key] if key in self else default

    def __setitem__(self, key: K, value: V) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.maxsize:
            old_key, old_value = self.popitem(last=False)
            if self.on_evict is not None:
                self.on_evict(old_key, old_value)
