"""The decisions of one document's sync sessions, without I/O.

`Documents` (documents.py) runs one sync round for a connection and a document
under the document's lock in four steps, and each step's decision is a function
here that returns what to do instead of doing it, so it is testable with a
`Document`, a `SyncState` and bytes (`tests/syncserver/test_synchronizer.py`):

1. `admit` — may this connection sync this document with this message? Given the
   stored rules (None: not stored yet), the `AccessPolicy` and, when the answer
   depends on it, the parsed message (`needs_parse` says when), returns `Accept`
   (with `creating` if the document is not stored yet), `Unavailable` (answer
   `doc-unavailable`) or `Refuse` (answer `error` naming the document).
2. `receive` — apply the message to the document and the connection's sync state,
   asking the `Authorship` about each change first; returns `Received` (the
   hashes newly applied: the caller must store them durably, `changes_to_store`,
   before step 3) or `Refuse` (nothing of the message applied).
3. `replies` — the sync message to send each connection with a session, after
   every change they may advertise is stored.
4. (gossip of the sender's new heads: `syncserver/gossip.py`.)

`receive` and `replies` are CPU work: the hub may run them on a worker thread,
always under the document's lock.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from hearth.types import ChangeHash, Did, DocumentId
from syncserver.access import AccessPolicy, Authorship
from syncserver.automerge import (
    AutomergeError,
    Document,
    QueueFullError,
    SyncState,
    UnsupportedChunkError,
)
from syncserver.automerge import SyncMessage as AutomergeSyncMessage
from syncserver.automerge.chunk import Change
from syncserver.messages import SyncMessage
from syncserver.peers import Connection
from syncserver.storage import Access, StoredChange


@dataclass(frozen=True)
class Accept:
    """Sync. With `creating`, the document is not stored yet: the session must be
    given room among those on documents not stored yet."""

    creating: bool = False


@dataclass(frozen=True)
class Unavailable:
    """Answer `doc-unavailable`; count `reason`. With `wait`, remember the request
    (sync once the document appears or access is granted); with `end_session`,
    end the connection's session on the document first."""

    reason: str
    wait: bool = True
    end_session: bool = False


@dataclass(frozen=True)
class Refuse:
    """Answer `error` naming the document with `text`; count `reason`. Nothing of
    the message is applied."""

    reason: str
    text: str


Admission = Accept | Unavailable | Refuse


@dataclass(frozen=True)
class Received:
    """A message applied: `added` are the hashes newly in the document (store them
    before any reply advertises them); `queued` says the sender now has changes
    waiting for missing dependencies in this document."""

    added: list[bytes]
    queued: bool


def needs_parse(
    document_id: DocumentId, did: Did | None, stored: Access | None, policy: AccessPolicy
) -> bool:
    """Whether `admit` needs the parsed message: only when the answer depends on it
    (not stored yet, or a reader who may not write). Writers' messages are parsed
    once, by the document, in `receive`."""
    return stored is None or not policy.may_write(did, document_id, stored)


def malformed(error: AutomergeError) -> Refuse:
    return Refuse("malformed", f"malformed sync message: {error}")


def session_limit(document_id: DocumentId, open_sessions: int, max_sessions: int) -> Refuse | None:
    """Whether a connection with `open_sessions` sync sessions may open one more, on
    `document_id`: each session keeps its document loaded (pinned in the cache)
    until the connection leaves, so their number per connection is capped
    (`max_sessions`; 0: no cap). Returns the refusal beyond the cap, else None."""
    if max_sessions <= 0 or open_sessions < max_sessions:
        return None
    return Refuse(
        "sessions_full",
        f"document {document_id}: this connection already syncs {open_sessions}"
        f" documents, the limit (max-sessions-per-connection = {max_sessions});"
        " nothing stored, close other documents or reconnect",
    )


def admit(
    document_id: DocumentId,
    did: Did | None,
    stored: Access | None,
    policy: AccessPolicy,
    *,
    is_request: bool,
    parsed: AutomergeSyncMessage | None,
) -> Admission:
    """Decide whether `did`'s connection may take part in a sync round on the
    document whose stored rules are `stored` (None: not stored). Pass `parsed`
    whenever `needs_parse` says so."""
    if stored is None:
        assert parsed is not None
        if is_request or not parsed.heads:
            # Someone asks for a document nobody has stored.
            return Unavailable("unknown")
        if did is None:
            # Anonymous peers may only read public documents, so never create one.
            return Unavailable("anonymous_create", wait=False)
        return Accept(creating=True)
    if not policy.may_read(did, document_id, stored):
        return Unavailable("not_reader", end_session=True)
    if parsed is not None and parsed.changes and not policy.may_write(did, document_id, stored):
        return Refuse(
            "not_writer",
            f"document {document_id}: you may not write to it; changes not stored",
        )
    return Accept()


class _NotAuthor(Exception):
    def __init__(self, reason: str, change: Change) -> None:
        super().__init__(reason)
        self.reason = reason
        self.change = change


def receive(
    doc: Document,
    state: SyncState,
    data: bytes,
    *,
    document_id: DocumentId,
    did: Did | None,
    source: Hashable,
    authorship: Authorship,
    max_inflated: int | None = None,
) -> Received | Refuse:
    """Apply a sync message from `did`'s connection (its orphans charged to
    `source`) to `doc` and its sync state; call under the document's lock.

    Every change is shown to `authorship` before anything is applied: one refusal
    refuses the whole message, as a malformed one is."""

    def check(change: Change) -> None:
        reason = authorship.check(did, change.actor, document_id)
        if reason is not None:
            raise _NotAuthor(reason, change)

    try:
        added = doc.receive_sync_message(
            state, data, max_inflated=max_inflated, source=source, check=check
        )
    except QueueFullError as e:
        return Refuse("queue_full", f"document {document_id}: {e.reason}; changes not stored")
    except UnsupportedChunkError as e:
        return Refuse("document_chunk", f"document {document_id}: {e}; nothing applied")
    except AutomergeError as e:
        return malformed(e)
    except _NotAuthor as e:
        return Refuse(
            "not_author",
            f"document {document_id}: change {e.change.hash.hex()} refused ({e.reason});"
            " nothing applied",
        )
    return Received(added, bool(doc.queued_from(source)[0]))


def changes_to_store(doc: Document, added: Sequence[bytes]) -> list[StoredChange]:
    """The newly applied changes as the store keeps them."""
    changes = []
    for h in added:
        change = doc.get_change(h)
        assert change is not None
        changes.append(StoredChange(ChangeHash(h), change.raw))
    return changes


def replies(
    doc: Document,
    document_id: DocumentId,
    sender_id: str,
    targets: Sequence[tuple[Connection, SyncState]],
) -> list[tuple[Connection, SyncMessage]]:
    """Each target's next sync message from us (`sender_id`), if it needs one;
    call under the document's lock, after storing every change they may advertise."""
    out = []
    for conn, state in targets:
        data = doc.generate_sync_message(state)
        if data is not None:
            out.append((conn, SyncMessage(sender_id, conn.peer_id, document_id, data)))
    return out


def initial_state(raw: bytes | None) -> SyncState:
    """A session's first sync state: the persisted one if it decodes, else fresh."""
    if raw is None:
        return SyncState()
    try:
        return SyncState.decode(raw)
    except AutomergeError:
        return SyncState()
