"""Rendered public-key answers, kept in memory: a warm lookup skips the database
and the base58 encoding.

Exact for one process: the keyring calls `invalidate(did)` whenever a DID's keys
change (rotate, register), in the same process that serves lookups. A lookup
that started before a change never stores its (possibly stale) answer after it:
`put` is refused unless `epoch()` is what it was when the lookup started.
"""

from __future__ import annotations

from collections import OrderedDict


class AnswerCache:
    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._epoch = 0
        self._kinds: set[str] = set()

    def epoch(self) -> int:
        """Read before looking a DID up; pass to `put`."""
        return self._epoch

    def get(self, kind: str, did: str) -> bytes | None:
        key = (kind, did)
        body = self._entries.get(key)
        if body is not None:
            self._entries.move_to_end(key)
        return body

    def put(self, kind: str, did: str, body: bytes, epoch: int) -> None:
        if epoch != self._epoch or self.max_entries <= 0:
            return
        self._kinds.add(kind)
        self._entries[(kind, did)] = body
        self._entries.move_to_end((kind, did))
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def invalidate(self, did: str) -> None:
        self._epoch += 1
        for kind in self._kinds:
            self._entries.pop((kind, did), None)

    def __len__(self) -> int:
        return len(self._entries)
