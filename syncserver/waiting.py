"""Pending requests: peers told `doc-unavailable` that still want the document.

Like the JS sync server, the syncserver starts syncing a document with the peers
that asked for it as soon as it is stored, or as soon as its owner lets them read
it. Remembering who asked costs memory per (peer, document), so it is bounded per
peer and in total. When the total is reached, a newcomer takes the oldest entry
of the peer holding the most (if that peer holds more than the newcomer), so
nobody can fill the table and lock the others out: one peer can hold at most
its per-peer share, and loses entries first when room is short. A request that
gets no room is still answered `doc-unavailable`, only not remembered (the client
asks again when it reconnects, or when its user opens the document again).

The hub keeps a second room, bounded the same way, for peers syncing a document
that is not stored yet (they offered heads: about to create it), since each such
session holds a cache entry until the document is stored or the peer leaves.

No I/O. Cost: a few dict entries per pending request (~0.3 KB with its document
id); adding, removing and making room are O(1) amortised, forgetting a peer is
O(its requests).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

from hearth.types import DocumentId

P = TypeVar("P", bound=Hashable)


class WaitingRoom(Generic[P]):
    """Who waits for which document, bounded per peer and in total."""

    def __init__(self, per_peer: int, total: int) -> None:
        self.per_peer = per_peer
        self.total = total
        self._by_document: dict[DocumentId, dict[P, None]] = {}
        self._by_peer: dict[P, dict[DocumentId, None]] = {}  # oldest first
        # Peers by how many entries they hold, and the largest such count: finds
        # whom to take room from in O(1) amortised.
        self._holders: dict[int, dict[P, None]] = {}
        self._most = 0
        self._count = 0

    def __len__(self) -> int:
        """Pending requests, all peers together."""
        return self._count

    def documents(self) -> int:
        """Documents someone waits for."""
        return len(self._by_document)

    def of(self, peer: P) -> int:
        """Pending requests of one peer."""
        return len(self._by_peer.get(peer, ()))

    def add(self, peer: P, document_id: DocumentId) -> tuple[bool, tuple[P, DocumentId] | None]:
        """Remember that `peer` waits for `document_id`.

        Returns (added, taken): `added` is False if there was no room for it (the
        peer holds its share, or the total is reached and nobody holds more than
        it); `taken` is the (peer, document) entry forgotten to make room, if any,
        which the caller must treat as gone.
        """
        mine = self._by_peer.get(peer)
        held = 0 if mine is None else len(mine)
        if mine is not None and document_id in mine:
            return True, None
        if held >= self.per_peer:
            return False, None
        taken = None
        if self._count >= self.total:
            victim = self._biggest()
            if victim is None or self.of(victim) <= held:
                return False, None
            oldest = next(iter(self._by_peer[victim]))
            self.discard(victim, oldest)
            taken = (victim, oldest)
        if mine is None:
            mine = self._by_peer[peer] = {}
        mine[document_id] = None
        self._by_document.setdefault(document_id, {})[peer] = None
        self._count += 1
        self._moved(peer, held, held + 1)
        return True, taken

    def discard(self, peer: P, document_id: DocumentId) -> None:
        mine = self._by_peer.get(peer)
        if mine is None or document_id not in mine:
            return
        held = len(mine)
        del mine[document_id]
        if not mine:
            del self._by_peer[peer]
        waiters = self._by_document[document_id]
        del waiters[peer]
        if not waiters:
            del self._by_document[document_id]
        self._count -= 1
        self._moved(peer, held, held - 1)

    def waiting_for(self, document_id: DocumentId) -> list[P]:
        """The peers waiting for `document_id`, in the order they asked."""
        return list(self._by_document.get(document_id, ()))

    def drop_peer(self, peer: P) -> None:
        """Forget every request of `peer` (it left)."""
        for document_id in list(self._by_peer.get(peer, ())):
            self.discard(peer, document_id)

    def _moved(self, peer: P, old: int, new: int) -> None:
        if old:
            bucket = self._holders[old]
            del bucket[peer]
            if not bucket:
                del self._holders[old]
        if new:
            self._holders.setdefault(new, {})[peer] = None
            self._most = max(self._most, new)
        # Counts move by one at a time, so this walks down at most as far as they went up.
        while self._most and self._most not in self._holders:
            self._most -= 1

    def _biggest(self) -> P | None:
        bucket = self._holders.get(self._most)
        return None if not bucket else next(iter(bucket))
