"""Who may read and write a document, and who may author a change: the one place
that decides.

No I/O. The hub asks an `AccessPolicy` at every decision about a connection and a
document (a sync message, a waiting request woken up, new rules from
`setAccess`), and an `Authorship` about every change a sync message brings,
before anything of that message is applied. Today:

- `StoredAccess` answers from the document's stored rules (owner, readers,
  writers, public: docs/syncserver.md "Access"), which the hub loads with the
  document and passes in as `stored`;
- `AnyAuthor` accepts every change.

**Plug-in point for space authority** (issue 12; docs/spaces.md "Plug-in
points"): a policy that knows which space a document belongs to answers from
that space's `SpaceState` (`state.may_read(did)`, `state.may_write(did)`), and
an `Authorship` answers from `state.may_write_as(did, actor)`. Pass them to
`SyncHub(access_policy=…, authorship=…)`. When a space's state changes (a kick,
a ban), call `SyncHub.access_changed` for its documents so open sessions of
those who lost read access end at once.

Contract for implementations: answer from memory, without blocking (no storage
or network I/O). `may_read`/`may_write` run on the event loop under the
document's lock; `Authorship.check` may run on a compute worker thread, also
under the document's lock, so it must only read state that another thread may
replace but never mutates in place (e.g. an immutable snapshot).
"""

from __future__ import annotations

from typing import Protocol

from hearth.types import Did, DocumentId
from syncserver.storage import Access


class AccessPolicy(Protocol):
    """Whether a DID (None: anonymous) may read or write a stored document."""

    def may_read(self, did: Did | None, document_id: DocumentId, stored: Access) -> bool:
        """May `did` sync, find, export the document and talk in it (ephemeral)?
        `stored` is the document's stored rules."""
        ...

    def may_write(self, did: Did | None, document_id: DocumentId, stored: Access) -> bool:
        """May changes from `did` to the document be stored? Asked only of readers."""
        ...


class StoredAccess:
    """Today's policy: the document's stored owner, readers, writers and `public`."""

    def may_read(self, did: Did | None, document_id: DocumentId, stored: Access) -> bool:
        return stored.can_read(did)

    def may_write(self, did: Did | None, document_id: DocumentId, stored: Access) -> bool:
        return stored.can_write(did)


class Authorship(Protocol):
    """Whether a change written by `actor` may be stored from `did`'s connection."""

    def check(self, did: Did | None, actor: bytes, document_id: DocumentId) -> str | None:
        """None to accept the change; else a short reason to refuse the whole sync
        message it came in (nothing of it is applied or stored). `actor` is the
        change's raw actor id."""
        ...


class AnyAuthor:
    """Today's authorship rule: any writer may store changes of any actor."""

    def check(self, did: Did | None, actor: bytes, document_id: DocumentId) -> str | None:
        return None
