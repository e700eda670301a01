"""In-memory storage: for tests and ephemeral servers. Nothing survives the process."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from hearth.base58 import b58encode
from hearth.storage import StorageHealth
from hearth.types import ChangeHash, Did, DocumentId
from syncserver.storage.base import Access, StorageError, StorageStats, StoredChange


@dataclass
class _Doc:
    access: Access
    changes: list[StoredChange] = field(default_factory=list)
    hashes: set[ChangeHash] = field(default_factory=set)
    sync_states: dict[str, bytes] = field(default_factory=dict)


class MemoryStorage:
    def __init__(self) -> None:
        self._id = b58encode(os.urandom(16))
        self._docs: dict[DocumentId, _Doc] = {}
        self._tokens: dict[bytes, tuple[Did, float, bool]] = {}
        self._tokens_of: dict[Did, dict[bytes, None]] = {}  # insertion-ordered sets
        self._purge_at = 64  # token count at which expired ones are swept
        self._changes = 0
        self._bytes = 0
        self.health = StorageHealth("documents")  # memory never fails

    def check(self) -> None:
        pass

    def storage_id(self) -> str:
        return self._id

    def get_access(self, document_id: DocumentId) -> Access | None:
        doc = self._docs.get(document_id)
        return None if doc is None else doc.access

    def set_access(self, document_id: DocumentId, access: Access) -> None:
        doc = self._docs.get(document_id)
        if doc is None:
            raise StorageError(f"no document {document_id}")
        doc.access = access

    def commit(
        self,
        document_id: DocumentId,
        changes: Sequence[StoredChange],
        *,
        create: Access | None = None,
        sync_states: Mapping[str, bytes] | None = None,
    ) -> int:
        doc = self._docs.get(document_id)
        if doc is None:
            if create is None:
                raise StorageError(f"no document {document_id}")
            doc = self._docs[document_id] = _Doc(create)
        added = 0
        for change in changes:
            if change.hash in doc.hashes:
                continue
            doc.hashes.add(change.hash)
            doc.changes.append(change)
            added += 1
            self._bytes += len(change.chunk)
        self._changes += added
        doc.sync_states.update(sync_states or {})
        return added

    def changes(self, document_id: DocumentId) -> Iterator[StoredChange]:
        doc = self._docs.get(document_id)
        return iter(() if doc is None else list(doc.changes))

    def load_sync_state(self, document_id: DocumentId, storage_id: str) -> bytes | None:
        doc = self._docs.get(document_id)
        return None if doc is None else doc.sync_states.get(storage_id)

    def save_sync_state(self, document_id: DocumentId, storage_id: str, state: bytes) -> None:
        doc = self._docs.get(document_id)
        if doc is not None:
            doc.sync_states[storage_id] = state

    def add_token(
        self,
        token_hash: bytes,
        did: Did,
        expires_at: float,
        *,
        now: float = 0.0,
        keep: int | None = None,
    ) -> int:
        self._forget_token(token_hash)
        mine = self._tokens_of.setdefault(did, {})
        for key in list(mine):
            _owner, expires, revoked = self._tokens[key]
            if revoked or expires <= now:
                self._forget_token(key)
        if len(self._tokens) >= self._purge_at:  # amortised: the table at most doubles
            for key, (_owner, expires, _revoked) in list(self._tokens.items()):
                if expires <= now:
                    self._forget_token(key)
            self._purge_at = max(64, 2 * len(self._tokens))
        evicted = 0
        if keep is not None and len(mine) >= max(keep, 1):
            # Oldest expiry first; the sort is stable, so ties go in insertion order.
            by_age = sorted(mine, key=lambda key: self._tokens[key][1])
            for key in by_age[: len(mine) + 1 - max(keep, 1)]:
                self._forget_token(key)
                evicted += 1
        self._tokens[token_hash] = (did, expires_at, False)
        self._tokens_of.setdefault(did, {})[token_hash] = None
        return evicted

    def _forget_token(self, token_hash: bytes) -> None:
        entry = self._tokens.pop(token_hash, None)
        if entry is None:
            return
        mine = self._tokens_of.get(entry[0])
        if mine is not None:
            mine.pop(token_hash, None)
            if not mine:
                del self._tokens_of[entry[0]]

    def lookup_token(self, token_hash: bytes, now: float) -> Did | None:
        entry = self._tokens.get(token_hash)
        if entry is None or entry[2] or entry[1] <= now:
            return None
        return entry[0]

    def revoke_token(self, token_hash: bytes) -> Did | None:
        entry = self._tokens.get(token_hash)
        if entry is None:
            return None
        self._tokens[token_hash] = (entry[0], entry[1], True)
        return entry[0]

    def revoke_tokens(self, did: Did) -> int:
        count = 0
        for key in self._tokens_of.get(did, {}):
            owner, expires, revoked = self._tokens[key]
            if not revoked:
                self._tokens[key] = (owner, expires, True)
                count += 1
        return count

    def stats(self) -> StorageStats:
        return StorageStats(len(self._docs), self._changes, self._bytes)

    def close(self) -> None:
        pass
