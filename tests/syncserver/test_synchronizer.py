"""The sync round's decisions without a hub or a socket: Documents, SyncStates, bytes."""

from __future__ import annotations

import os

from hearth.types import ChangeHash, Did, DocumentId
from syncserver import synchronizer
from syncserver.access import AnyAuthor, StoredAccess
from syncserver.automerge import Document, SyncState
from syncserver.automerge import SyncMessage as AutomergeSyncMessage
from syncserver.automerge.chunk import encode_change
from syncserver.messages import (
    DocUnavailableMessage,
    ErrorMessage,
    JoinMessage,
    PeerMetadata,
    SyncMessage,
)
from syncserver.peers import Connection
from syncserver.storage import Access, MemoryStorage, StoredChange
from syncserver.synchronizer import Accept, Received, Refuse, Unavailable
from tests.syncserver.ids import new_document_id
from tests.syncserver.test_hub import Conn, new_hub
from tests.syncserver.test_protocol import child_change, make_changes

ALICE = Did("did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK")
BOB = Did("did:key:z6MkpTHR8VNsBxYAAWHut2Geadd9jSwuBV8xRoAnwWsdvktH")
POLICY = StoredAccess()


def offer(doc: Document) -> AutomergeSyncMessage:
    """The first message a client holding `doc` sends (heads, no changes)."""
    data = doc.generate_sync_message(SyncState())
    assert data is not None
    return AutomergeSyncMessage.decode(data)


def admit(
    did: Did | None,
    stored: Access | None,
    parsed: AutomergeSyncMessage | None,
    *,
    is_request: bool = False,
    doc_id: DocumentId | None = None,
) -> synchronizer.Admission:
    doc_id = doc_id or new_document_id()
    if synchronizer.needs_parse(doc_id, did, stored, POLICY):
        assert parsed is not None, "admit needs the parsed message here"
    return synchronizer.admit(doc_id, did, stored, POLICY, is_request=is_request, parsed=parsed)


def test_admission_follows_the_access_table() -> None:
    doc = make_changes(2)
    heads_only = offer(doc)
    with_changes = AutomergeSyncMessage(heads=[], changes=[c.raw for c in doc.changes()])
    private = Access(owner=ALICE)
    readable = Access(owner=ALICE, readers=frozenset({BOB}))

    # Not stored: a request, or an offer without heads, asks for what nobody has.
    assert admit(ALICE, None, heads_only, is_request=True) == Unavailable("unknown")
    assert admit(ALICE, None, AutomergeSyncMessage(heads=[])) == Unavailable("unknown")
    # Anonymous peers never create; a DID offering heads is about to.
    assert admit(None, None, heads_only) == Unavailable("anonymous_create", wait=False)
    assert admit(ALICE, None, heads_only) == Accept(creating=True)
    # Stored: the owner syncs without the message being parsed at all.
    doc_id = new_document_id()
    assert not synchronizer.needs_parse(doc_id, ALICE, private, POLICY)
    assert admit(ALICE, private, None, doc_id=doc_id) == Accept()
    # Strangers lose their session; readers sync, but their changes are refused.
    assert admit(BOB, private, heads_only) == Unavailable("not_reader", end_session=True)
    assert admit(BOB, readable, heads_only) == Accept()
    refused = admit(BOB, readable, with_changes)
    assert isinstance(refused, Refuse) and refused.reason == "not_writer"


def test_receive_returns_the_changes_to_store_and_replies_advertise_them() -> None:
    client = make_changes(3)
    server, state, doc_id = Document(), SyncState(), new_document_id()
    everything = AutomergeSyncMessage(
        heads=client.heads, changes=[c.raw for c in client.changes()]
    ).encode()

    received = synchronizer.receive(
        server, state, everything, document_id=doc_id, did=ALICE, source="a", authorship=AnyAuthor()
    )

    assert isinstance(received, Received) and not received.queued
    assert sorted(received.added) == sorted(c.hash for c in client.changes())
    stored = synchronizer.changes_to_store(server, received.added)
    assert {c.chunk for c in stored} == {c.raw for c in client.changes()}
    conn = Connection("p", ALICE, PeerMetadata(), peer=None)  # type: ignore[arg-type]
    [(to, reply)] = synchronizer.replies(server, doc_id, "srv", [(conn, state)])
    assert to is conn
    assert isinstance(reply, SyncMessage) and reply.target_id == "p"
    assert sorted(AutomergeSyncMessage.decode(reply.data).heads) == sorted(client.heads)


def test_orphans_are_reported_and_a_malformed_message_changes_nothing() -> None:
    client = make_changes(3)
    first, *rest = client.changes()
    server, state, doc_id = Document(), SyncState(), new_document_id()
    orphans = AutomergeSyncMessage(heads=client.heads, changes=[c.raw for c in rest]).encode()

    received = synchronizer.receive(
        server, state, orphans, document_id=doc_id, did=ALICE, source="a", authorship=AnyAuthor()
    )
    assert received == Received([], queued=True)

    junk = synchronizer.receive(
        server,
        state,
        b"\x42junk",
        document_id=doc_id,
        did=ALICE,
        source="a",
        authorship=AnyAuthor(),
    )
    assert isinstance(junk, Refuse) and junk.reason == "malformed"
    assert server.queued == 2 and len(server) == 0


class OnlyActor:
    """An authorship rule that accepts one actor id."""

    def __init__(self, actor: bytes) -> None:
        self.actor = actor
        self.asked: list[tuple[Did | None, bytes, DocumentId]] = []

    def check(self, did: Did | None, actor: bytes, document_id: DocumentId) -> str | None:
        self.asked.append((did, actor, document_id))
        return None if actor == self.actor else "actor not bound to this DID"


def test_one_change_by_a_foreign_actor_refuses_the_whole_message() -> None:
    mine, forged = os.urandom(16), os.urandom(16)
    first = encode_change(deps=[], actor=mine, seq=1, start_op=1)
    server, state, doc_id = Document(), SyncState(), new_document_id()
    client = Document()
    client.apply(first)
    second = encode_change(deps=client.heads, actor=forged, seq=1, start_op=2)
    client.apply(second)
    rule = OnlyActor(mine)
    message = AutomergeSyncMessage(heads=client.heads, changes=[first, second]).encode()

    refused = synchronizer.receive(
        server, state, message, document_id=doc_id, did=ALICE, source="a", authorship=rule
    )

    assert isinstance(refused, Refuse) and refused.reason == "not_author"
    assert "actor not bound to this DID" in refused.text
    assert [(did, actor) for did, actor, _ in rule.asked] == [(ALICE, mine), (ALICE, forged)]
    # Nothing applied, not even the change by the permitted actor; the state too is
    # untouched, so the client's next round starts from the same place.
    assert len(server) == 0 and server.queued == 0 and state.their_heads is None
    ok = synchronizer.receive(
        server,
        state,
        AutomergeSyncMessage(heads=[], changes=[first]).encode(),
        document_id=doc_id,
        did=ALICE,
        source="a",
        authorship=rule,
    )
    assert isinstance(ok, Received) and len(ok.added) == 1


class Nobody:
    """An access policy that lets no one read or write."""

    def may_read(self, did: Did | None, document_id: DocumentId, stored: Access) -> bool:
        return False

    def may_write(self, did: Did | None, document_id: DocumentId, stored: Access) -> bool:
        return False


async def test_the_hub_asks_the_plugged_in_policy_and_authorship() -> None:
    storage = MemoryStorage()
    doc_id = new_document_id()
    owned = make_changes(1)
    storage.commit(
        doc_id,
        [StoredChange(ChangeHash(c.hash), c.raw) for c in owned.changes()],
        create=Access(owner=ALICE),
    )
    # The stored rules let Alice read; the plugged-in policy does not.
    hub = new_hub(storage, access_policy=Nobody())
    peer = Conn([])
    conn = await hub.join(peer, JoinMessage("p", PeerMetadata(), ("1",)), ALICE)
    assert conn is not None
    request = Document().generate_sync_message(SyncState())
    assert request is not None
    await hub.handle(conn, SyncMessage("p", "srv", doc_id, request, is_request=True))
    assert any(isinstance(m, DocUnavailableMessage) for m in peer.inbox)

    # A change whose actor the authorship rule refuses is answered and not stored.
    hub = new_hub(storage, authorship=OnlyActor(os.urandom(16)))
    peer = Conn([])
    conn = await hub.join(peer, JoinMessage("p", PeerMetadata(), ("1",)), ALICE)
    assert conn is not None
    forged = child_change(owned)
    upload = AutomergeSyncMessage(heads=owned.heads, changes=[forged]).encode()
    await hub.handle(conn, SyncMessage("p", "srv", doc_id, upload))
    [error] = [m for m in peer.inbox if isinstance(m, ErrorMessage)]
    assert "not bound" in error.message and error.document_id == doc_id
    assert len(list(storage.changes(doc_id))) == 1


def test_session_limit() -> None:
    doc_id = new_document_id()
    assert synchronizer.session_limit(doc_id, 0, 2) is None
    assert synchronizer.session_limit(doc_id, 1, 2) is None
    refusal = synchronizer.session_limit(doc_id, 2, 2)
    assert refusal is not None and refusal.reason == "sessions_full"
    assert doc_id in refusal.text and "max-sessions-per-connection = 2" in refusal.text
    # 0: no cap.
    assert synchronizer.session_limit(doc_id, 10_000, 0) is None
