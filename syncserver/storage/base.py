"""The storage interface: documents, their changes by hash, sync states, session tokens.

Methods are synchronous and may block (a durable commit waits for the disk);
the server calls them from one worker thread, never from the event loop.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from hearth.storage import StorageHealth
from hearth.types import ChangeHash, Did, DocumentId


class StorageError(Exception):
    """A storage operation that cannot be carried out (e.g. unknown document)."""


@dataclass(frozen=True, slots=True)
class Access:
    """Who may read and write a document. Writers may also read; the owner may do both."""

    owner: Did | None = None
    public: bool = False
    readers: frozenset[Did] = field(default_factory=frozenset)
    writers: frozenset[Did] = field(default_factory=frozenset)

    def can_read(self, did: Did | None) -> bool:
        if self.public:
            return True
        if did is None:
            return False
        return did == self.owner or did in self.readers or did in self.writers

    def can_write(self, did: Did | None) -> bool:
        if did is None:
            return False
        return did == self.owner or did in self.writers


@dataclass(frozen=True, slots=True)
class StoredChange:
    """One change chunk exactly as received, and its hash."""

    hash: ChangeHash
    chunk: bytes


@dataclass(frozen=True, slots=True)
class StorageStats:
    documents: int
    changes: int
    change_bytes: int


class Storage(Protocol):
    def storage_id(self) -> str:
        """This store's id (automerge-repo `storageId`): stable across restarts."""
        ...

    def get_access(self, document_id: DocumentId) -> Access | None:
        """The document's access rules, or None if the document does not exist."""
        ...

    def set_access(self, document_id: DocumentId, access: Access) -> None:
        """Replace the access rules. Raises StorageError if the document does not exist."""
        ...

    def commit(
        self,
        document_id: DocumentId,
        changes: Sequence[StoredChange],
        *,
        create: Access | None = None,
        sync_states: Mapping[str, bytes] | None = None,
    ) -> int:
        """Store `changes` (in the order given) and sync states in one durable transaction.

        When this returns, the changes survive a crash or power loss. Changes
        whose hash is already stored are skipped; returns how many were new.
        A missing document is created with `create` as its access rules; with
        `create=None` a missing document raises StorageError.
        """
        ...

    def changes(self, document_id: DocumentId) -> Iterator[StoredChange]:
        """Every stored change of the document, in commit order (so causal order
        when each commit was given its changes causally ordered)."""
        ...

    def load_sync_state(self, document_id: DocumentId, storage_id: str) -> bytes | None: ...

    def save_sync_state(self, document_id: DocumentId, storage_id: str, state: bytes) -> None:
        """Persist a peer's sync state (ignored if the document does not exist)."""
        ...

    def add_token(
        self,
        token_hash: bytes,
        did: Did,
        expires_at: float,
        *,
        now: float = 0.0,
        keep: int | None = None,
    ) -> int:
        """Store a session token. `did`'s tokens that expired by `now` or were
        revoked are deleted, and some expired ones of other DIDs (so the table
        never grows by more than the live tokens); with `keep`, only `did`'s
        `keep` newest tokens (this one included) remain. Returns how many live
        tokens were evicted for `keep`."""
        ...

    def lookup_token(self, token_hash: bytes, now: float) -> Did | None:
        """The DID a live (unexpired, unrevoked) token is bound to, else None."""
        ...

    def revoke_token(self, token_hash: bytes) -> Did | None:
        """Revoke one token; returns the DID it was bound to, or None if unknown."""
        ...

    def revoke_tokens(self, did: Did) -> int:
        """Revoke every token of `did`; returns how many were not revoked before."""
        ...

    def stats(self) -> StorageStats: ...

    @property
    def health(self) -> StorageHealth:
        """The store's state, for `/xrpc/_health`. Methods that find the store
        unusable (locked, disk full, corrupt) raise `hearth.storage.StorageUnavailable`."""
        ...

    def check(self) -> None:
        """Raise StorageUnavailable unless the store could write now; may block briefly."""
        ...

    def close(self) -> None: ...
