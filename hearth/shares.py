"""Who holds what in a bounded store that anybody can add to. No I/O.

A store shared by every client (the replay cache of token ids, the router's
live router tokens) must stay bounded, and refusing everybody once it is full
hands the whole service to whoever fills it. `AddressShares` charges each
entry to the client address that added it and names the oldest entry of the
address holding the most: a full store forgets that one. A flood then only
displaces its own entries, and an address holding fewer entries than the
heaviest one never loses any.

Every operation is O(1). Memory: ~150 bytes per entry besides the key, ~350
per address holding any.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class AddressShares(Generic[K]):
    """The keys each address added, in arrival order, and which address holds the most.

    The store calls `add` for every entry it keeps and `remove` for every
    entry it drops (expired, used, evicted), with the same address.
    """

    def __init__(self) -> None:
        self._by_address: dict[str, OrderedDict[K, None]] = {}
        self._holding: dict[int, set[str]] = {}  # n -> the addresses holding n entries
        self._heaviest = 0

    def held_by(self, address: str) -> int:
        entries = self._by_address.get(address)
        return len(entries) if entries else 0

    def add(self, address: str, key: K) -> None:
        entries = self._by_address.setdefault(address, OrderedDict())
        entries[key] = None
        self._moved(address, len(entries) - 1, len(entries))

    def remove(self, address: str, key: K) -> None:
        entries = self._by_address[address]
        del entries[key]
        self._moved(address, len(entries) + 1, len(entries))
        if not entries:
            del self._by_address[address]

    def oldest_of_heaviest(self) -> K | None:
        """The entry to forget first: the oldest of an address holding the most (None: empty)."""
        if not self._heaviest:
            return None
        address = next(iter(self._holding[self._heaviest]))
        return next(iter(self._by_address[address]))

    def _moved(self, address: str, old: int, new: int) -> None:
        if old:
            holders = self._holding[old]
            holders.discard(address)
            if not holders:
                del self._holding[old]
        if new:
            self._holding.setdefault(new, set()).add(address)
        if new > self._heaviest:
            self._heaviest = new
        elif old == self._heaviest and old not in self._holding:
            self._heaviest = new  # old - 1: `address` itself now holds that many (or none is left)
