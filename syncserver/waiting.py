"""Pending requests: peers told `doc-unavailable` that still want the document.

Like the JS sync server, the syncserver starts syncing a document with the peers
that asked for it as soon as it is stored, or as soon as its owner lets them read
it. Remembering who asked costs memory per (peer, document), so it is bounded per
peer and in total; a request beyond either bound is still answered
`doc-unavailable`, only not remembered (the client asks again when it reconnects,
or when its user opens the document again).

No I/O. Cost: two dict/set entries per pending request (~0.3 KB with its document
id), O(1) to add or remove one, O(requests of the peer) to forget a peer.
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
        self._by_peer: dict[P, set[DocumentId]] = {}
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

    def add(self, peer: P, document_id: DocumentId) -> bool:
        """Remember that `peer` waits for `document_id`; False if a bound says no."""
        mine = self._by_peer.get(peer)
        if mine is not None and document_id in mine:
            return True
        if self._count >= self.total or (mine is not None and len(mine) >= self.per_peer):
            return False
        if mine is None:
            mine = self._by_peer[peer] = set()
        mine.add(document_id)
        self._by_document.setdefault(document_id, {})[peer] = None
        self._count += 1
        return True

    def discard(self, peer: P, document_id: DocumentId) -> None:
        mine = self._by_peer.get(peer)
        if mine is None or document_id not in mine:
            return
        mine.discard(document_id)
        if not mine:
            del self._by_peer[peer]
        waiters = self._by_document[document_id]
        del waiters[peer]
        if not waiters:
            del self._by_document[document_id]
        self._count -= 1

    def waiting_for(self, document_id: DocumentId) -> list[P]:
        """The peers waiting for `document_id`, in the order they asked."""
        return list(self._by_document.get(document_id, ()))

    def drop_peer(self, peer: P) -> None:
        """Forget every request of `peer` (it left)."""
        for document_id in list(self._by_peer.get(peer, ())):
            self.discard(peer, document_id)
