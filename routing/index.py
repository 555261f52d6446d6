"""A sorted list of ``(key, agent_id)`` with O(log n) search and memmove insert/remove.

Per queue, the engine keeps its routable members here in the strategy's key order, so a
decision walks from the front and stops at the first qualified agent instead of scanning every
agent. Python lists make insert/remove a memmove, fast for the sizes at hand (thousands).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator

Entry = tuple[tuple[float, ...], str]


class SortedIndex:
    """Sorted ``(key, agent_id)`` entries; keys are tuples, agent ids break ties."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[Entry] = []
        """The sorted entries (read-only by convention: change them only through add/remove; a
        plain attribute rather than a property because the engine reads it on every decision)."""

    def add(self, key: tuple[float, ...], agent_id: str) -> None:
        bisect.insort(self.items, (key, agent_id))

    def remove(self, key: tuple[float, ...], agent_id: str) -> None:
        items = self.items
        i = bisect.bisect_left(items, (key, agent_id))
        if i < len(items) and items[i][1] == agent_id:
            del items[i]
        else:  # pragma: no cover - our own invariant
            raise AssertionError(f"agent {agent_id} not in index at {key}")

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.items)

    def clear(self) -> None:
        self.items.clear()
