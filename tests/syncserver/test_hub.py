"""The hub without sockets: in-memory peers, an inline storage runner, recorded events."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from hearth.types import Did, DocumentId
from syncserver.automerge import Document, SyncState
from syncserver.automerge import SyncMessage as AutomergeSyncMessage
from syncserver.automerge.chunk import encode_change
from syncserver.hub import SyncHub
from syncserver.messages import (
    DocUnavailableMessage,
    ErrorMessage,
    JoinMessage,
    Message,
    PeerMetadata,
    RemoteHeads,
    RemoteHeadsChanged,
    RemoteSubscriptionChange,
    SyncMessage,
)
from syncserver.metrics import SyncMetrics
from syncserver.peers import Connection
from syncserver.storage import Access, MemoryStorage, StoredChange
from tests.syncserver.ids import new_document_id
from tests.syncserver.test_protocol import child_change, make_changes
from tests.timing import MS

ALICE = Did("did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK")
BOB = Did("did:key:z6MkpTHR8VNsBxYAAWHut2Geadd9jSwuBV8xRoAnwWsdvktH")


def grant_writer(storage: MemoryStorage, doc_id: DocumentId, did: Did) -> Access:
    access = storage.get_access(doc_id)
    assert access is not None
    access = Access(owner=access.owner, writers=access.writers | {did})
    storage.set_access(doc_id, access)
    return access


class RecordingStorage(MemoryStorage):
    def __init__(self, events: list[tuple[str, object]]) -> None:
        super().__init__()
        self.events = events

    def commit(
        self,
        document_id: DocumentId,
        changes: Sequence[StoredChange],
        *,
        create: Access | None = None,
        sync_states: object = None,
    ) -> int:
        self.events.append(("commit", {c.hash for c in changes}))
        return super().commit(document_id, changes, create=create, sync_states=sync_states)  # type: ignore[arg-type]


class Conn:
    def __init__(self, events: list[tuple[str, object]]) -> None:
        self.events = events
        self.inbox: list[Message] = []
        self.closed: tuple[int, str] | None = None

    def send(self, message: Message) -> None:
        self.events.append(("send", message))
        self.inbox.append(message)

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


def new_hub(storage: MemoryStorage, **options: Any) -> SyncHub:
    """A hub named "srv" over `storage`; `options` go to SyncHub (limits, runners)."""
    return SyncHub(
        storage, SyncMetrics(CollectorRegistry(), storage.stats), peer_id="srv", **options
    )


async def run_sync(
    hub: SyncHub, conn: Connection, peer: Conn, doc_id: DocumentId, doc: Document
) -> None:
    """Drive the sync protocol between `doc` and the hub until neither has anything to say."""
    state = SyncState()
    outgoing = doc.generate_sync_message(state)
    while outgoing is not None or peer.inbox:
        if outgoing is not None:
            await hub.handle(conn, SyncMessage(conn.peer_id, "srv", doc_id, outgoing))
        outgoing = None
        while peer.inbox:
            msg = peer.inbox.pop(0)
            if isinstance(msg, SyncMessage):
                doc.receive_sync_message(state, msg.data)
                outgoing = doc.generate_sync_message(state) or outgoing


async def test_heads_are_advertised_only_after_commit() -> None:
    events: list[tuple[str, object]] = []
    storage = RecordingStorage(events)
    hub = new_hub(storage)
    peer = Conn(events)
    conn = await hub.join(peer, JoinMessage("p", PeerMetadata(), ("1",)), ALICE)
    assert conn is not None
    doc_id = new_document_id()
    doc = make_changes(10)
    await run_sync(hub, conn, peer, doc_id, doc)
    doc.apply(child_change(doc))
    await run_sync(hub, conn, peer, doc_id, doc)

    committed: set[bytes] = set()
    advertised = 0
    for kind, value in events:
        if kind == "commit":
            assert isinstance(value, set)
            committed |= value
        elif isinstance(value, SyncMessage):
            heads = AutomergeSyncMessage.decode(value.data).heads
            assert set(heads) <= committed, "a head was advertised before it was committed"
            advertised += bool(heads)
    assert advertised >= 2
    assert committed == {c.hash for c in doc.changes()}


async def test_sync_state_persists_per_storage_id() -> None:
    storage = MemoryStorage()
    hub = new_hub(storage)
    doc_id = new_document_id()
    doc = make_changes(5)
    meta = PeerMetadata("client-store", is_ephemeral=False)
    peer = Conn([])
    conn = await hub.join(peer, JoinMessage("p", meta, ("1",)), ALICE)
    assert conn is not None
    await run_sync(hub, conn, peer, doc_id, doc)
    await hub.leave(conn)
    assert (
        storage.load_sync_state(doc_id, "client-store")
        == SyncState(shared_heads=doc.heads).encode()
    )

    # A reconnecting peer with the same storage gets a first reply that starts from
    # the shared heads instead of from nothing.
    conn2 = Conn([])
    peer2 = await hub.join(conn2, JoinMessage("p2", meta, ("1",)), ALICE)
    assert peer2 is not None
    hello = Document.load(doc.save()).generate_sync_message(SyncState(shared_heads=doc.heads))
    assert hello is not None
    conn2.inbox.clear()
    await hub.handle(peer2, SyncMessage("p2", "srv", doc_id, hello))
    replies = [m for m in conn2.inbox if isinstance(m, SyncMessage)]
    assert replies
    first = AutomergeSyncMessage.decode(replies[0].data)
    assert first.have and first.have[0].last_sync == doc.heads
    assert first.changes == []


async def test_ephemeral_peers_sync_states_are_not_persisted() -> None:
    storage = MemoryStorage()
    hub = new_hub(storage)
    doc_id = new_document_id()
    peer = Conn([])
    conn = await hub.join(peer, JoinMessage("p", PeerMetadata("st", True), ("1",)), ALICE)
    assert conn is not None
    await run_sync(hub, conn, peer, doc_id, make_changes(3))
    await hub.leave(conn)
    assert storage.load_sync_state(doc_id, "st") is None


async def test_cache_stays_bounded_and_reloads_from_storage() -> None:
    storage = MemoryStorage()
    hub = new_hub(storage, max_cached_documents=2)
    docs = {}
    for _ in range(5):
        peer = Conn([])
        conn = await hub.join(peer, JoinMessage("p", PeerMetadata(), ("1",)), ALICE)
        assert conn is not None
        doc_id = new_document_id()
        docs[doc_id] = make_changes(3)
        await run_sync(hub, conn, peer, doc_id, docs[doc_id])
        await hub.leave(conn)
    assert len(hub.cache) <= 2
    for doc_id, doc in docs.items():
        assert await hub.export(doc_id) == doc.save()


async def test_an_entry_a_task_waits_for_is_never_evicted() -> None:
    storage = MemoryStorage()
    hub = new_hub(storage, max_cached_documents=1)
    a, b = new_document_id(), new_document_id()
    entry = hub.cache.entry(a)
    await entry.lock.acquire()
    waiter = asyncio.create_task(hub.export(a))
    await asyncio.sleep(0)  # one turn of the loop: the export runs up to the lock
    assert entry.users == 1 and not waiter.done()
    entry.lock.release()
    # Before the export wakes up, another document comes in: `a` would be the one
    # evicted, and the export would then work on a copy the hub no longer knows.
    hub.cache.entry(b)
    assert hub.cache.get(a) is entry
    assert await waiter == b""
    assert entry.users == 0


def valid_upload() -> bytes:
    doc = make_changes(3)
    state = SyncState()
    state.their_have = []
    state.their_need = []
    message = doc.generate_sync_message(state)
    assert message is not None
    parsed = AutomergeSyncMessage.decode(message)
    parsed.changes = [c.raw for c in doc.changes()]
    return parsed.encode()


UPLOAD = valid_upload()


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.tuples(st.integers(0, len(UPLOAD) - 1), st.integers(0, 255)).map(
            lambda p: UPLOAD[: p[0]] + bytes([p[1]]) + UPLOAD[p[0] + 1 :]
        ),
        st.integers(0, len(UPLOAD)).map(lambda n: UPLOAD[:n]),
    )
)
def test_any_sync_payload_gets_an_answer_never_an_exception(data: bytes) -> None:
    async def run() -> list[Message]:
        storage = MemoryStorage()
        hub = new_hub(storage)
        peer = Conn([])
        conn = await hub.join(peer, JoinMessage("p", PeerMetadata(), ("1",)), ALICE)
        assert conn is not None
        peer.inbox.clear()
        await hub.handle(conn, SyncMessage("p", "srv", new_document_id(), data))
        # Whatever was stored is a loadable, causally complete document.
        for doc_id in list(hub.cache):
            blob = b"".join(c.chunk for c in storage.changes(doc_id))
            assert Document.load(blob).missing_deps() == []
        return peer.inbox

    replies = asyncio.run(run())
    assert replies, "the hub must answer every sync message"


async def test_orphan_changes_beyond_the_queue_limit_are_refused() -> None:
    storage = MemoryStorage()
    hub = new_hub(
        storage,
        max_queued_changes=50,
        peer_queue_share=1.0,  # the document-wide limit, reached by one peer
    )
    peer = Conn([])
    conn = await hub.join(peer, JoinMessage("p", PeerMetadata(), ("1",)), ALICE)
    assert conn is not None
    doc_id = new_document_id()
    doc = make_changes(3)
    await run_sync(hub, conn, peer, doc_id, doc)
    stored = len(list(storage.changes(doc_id)))
    # A chain whose first change is withheld: every other change is an orphan.
    chain = make_changes(200)
    orphans = [c.raw for c in list(chain.changes())[1:]]

    def upload(raws: list[bytes]) -> SyncMessage:
        data = AutomergeSyncMessage(heads=doc.heads, changes=raws).encode()
        return SyncMessage("p", "srv", doc_id, data)

    peer.inbox.clear()
    await hub.handle(conn, upload(orphans[:40]))
    assert hub.cache[doc_id].doc.queued == 40
    await hub.handle(conn, upload(orphans[40:]))
    errors = [m for m in peer.inbox if isinstance(m, ErrorMessage)]
    assert len(errors) == 1 and errors[0].document_id == doc_id
    assert doc_id in errors[0].message and "missing dependencies" in errors[0].message
    assert hub.cache[doc_id].doc.queued == 40
    assert len(list(storage.changes(doc_id))) == stored
    # The withheld change releases the queue; the rest then fits.
    await hub.handle(conn, upload([next(chain.changes()).raw]))
    await hub.handle(conn, upload(orphans[40:]))
    assert hub.cache[doc_id].doc.queued == 0
    assert len(list(storage.changes(doc_id))) == stored + 200


@dataclass
class OrphanHub:
    """A hub whose document `doc_id` (owned by the first peer, BOB a writer too)
    lets each writer hold a quarter of 40 orphans; one connection per (name, DID)."""

    storage: MemoryStorage
    hub: SyncHub
    doc_id: DocumentId
    doc: Document
    conns: dict[str, Conn]
    connections: dict[str, Connection]

    @classmethod
    async def start(cls, *members: tuple[str, Did]) -> OrphanHub:
        storage = MemoryStorage()
        hub = new_hub(
            storage,
            max_queued_changes=40,  # each writer may hold a quarter: 10
        )
        doc_id = new_document_id()
        doc = make_changes(3)
        conns: dict[str, Conn] = {}
        connections: dict[str, Connection] = {}
        for i, (name, did) in enumerate(members):
            peer = conns[name] = Conn([])
            conn = await hub.join(peer, JoinMessage(name, PeerMetadata(), ("1",)), did)
            assert conn is not None
            connections[name] = conn
            await run_sync(hub, conn, peer, doc_id, Document.load(doc.save()))
            peer.inbox.clear()
            if i == 0:
                await hub.access_changed(doc_id, grant_writer(storage, doc_id, BOB))
        return cls(storage, hub, doc_id, doc, conns, connections)

    def upload(self, name: str, raws: list[bytes]) -> SyncMessage:
        data = AutomergeSyncMessage(heads=self.doc.heads, changes=raws).encode()
        return SyncMessage(name, "srv", self.doc_id, data)

    def errors(self, name: str) -> list[ErrorMessage]:
        return [m for m in self.conns[name].inbox if isinstance(m, ErrorMessage)]


async def test_one_peers_orphans_do_not_block_another_peers() -> None:
    o = await OrphanHub.start(("a", ALICE), ("b", BOB))
    storage, hub, doc_id, connections = o.storage, o.hub, o.doc_id, o.connections
    entry = hub.cache[doc_id]
    upload, errors = o.upload, o.errors

    # Peer a sends orphans (chains whose first change is withheld) until refused.
    a_chain = list(make_changes(41).changes())
    for start in range(1, 41, 10):
        await hub.handle(
            connections["a"], upload("a", [c.raw for c in a_chain[start : start + 10]])
        )
    refused = errors("a")
    assert len(refused) == 3 and all(e.document_id == doc_id for e in refused)
    assert doc_id in refused[0].message and "per writer" in refused[0].message
    assert entry.doc.queued == 10
    # Peer b's out-of-order changes are still accepted, and stored once complete.
    b_chain = list(make_changes(11).changes())
    await hub.handle(connections["b"], upload("b", [c.raw for c in b_chain[1:]]))
    assert errors("b") == [] and entry.doc.queued == 20
    stored = len(list(storage.changes(doc_id)))
    await hub.handle(connections["b"], upload("b", [b_chain[0].raw]))
    assert errors("b") == [] and entry.doc.queued == 10
    assert len(list(storage.changes(doc_id))) == stored + 11
    # a's orphans leave with it, except one b sent too (b may still need it).
    await hub.handle(connections["b"], upload("b", [a_chain[1].raw]))
    assert entry.doc.queued == 10 and errors("b") == []
    await hub.leave(connections["a"])
    assert entry.doc.queued == 1
    await hub.handle(connections["b"], upload("b", [a_chain[0].raw]))
    assert entry.doc.queued == 0
    assert len(list(storage.changes(doc_id))) == stored + 13


async def test_an_anonymous_peer_id_is_not_taken_over_by_another_anonymous_join() -> None:
    storage = MemoryStorage()
    hub = new_hub(storage)
    first = Conn([])
    anon = await hub.join(first, JoinMessage("p", PeerMetadata(), ("1",)), None)
    assert anon is not None
    intruder = Conn([])
    assert await hub.join(intruder, JoinMessage("p", PeerMetadata(), ("1",)), None) is None
    assert intruder.closed is not None and intruder.closed[0] == 1008
    assert [type(m) for m in intruder.inbox] == [ErrorMessage]
    assert first.closed is None and hub.connections["p"] is anon and not anon.closed
    # Once the old socket is gone (closed, or dead to the ping timeout), the same
    # peerId reconnects.
    await hub.leave(anon)
    second = Conn([])
    again = await hub.join(second, JoinMessage("p", PeerMetadata(), ("1",)), None)
    assert again is not None and hub.connections["p"] is again


async def test_a_peer_id_is_replaced_only_by_the_same_identity() -> None:
    storage = MemoryStorage()
    hub = new_hub(storage)
    bob = Did("did:key:z6MkpTHR8VNsBxYAAWHut2Geadd9jSwuBV8xRoAnwWsdvktH")
    first = Conn([])
    alice = await hub.join(first, JoinMessage("p", PeerMetadata(), ("1",)), ALICE)
    assert alice is not None
    # Someone else (another DID, or anonymous) who learnt the peerId cannot take it.
    for intruder in (bob, None):
        peer = Conn([])
        assert await hub.join(peer, JoinMessage("p", PeerMetadata(), ("1",)), intruder) is None
        assert peer.closed is not None and peer.closed[0] == 1008
        assert [type(m) for m in peer.inbox] == [ErrorMessage]
        assert first.closed is None and hub.connections["p"] is alice and not alice.closed
    # The same DID (another tab, a reconnect) replaces the old socket.
    second = Conn([])
    again = await hub.join(second, JoinMessage("p", PeerMetadata(), ("1",)), ALICE)
    assert again is not None and hub.connections["p"] is again
    assert first.closed is not None and first.closed[0] == 1000 and alice.closed


async def test_remote_heads_claims_about_firsthand_storage_are_dropped() -> None:
    storage = MemoryStorage()
    hub = new_hub(storage)
    doc_id = new_document_id()
    doc = make_changes(2)
    connections: dict[str, tuple[Connection, Conn]] = {}
    for name, sid in (("a", "store-a"), ("b", "store-b"), ("liar", "store-liar")):
        peer = Conn([])
        meta = PeerMetadata(sid, is_ephemeral=False)
        conn = await hub.join(peer, JoinMessage(name, meta, ("1",)), ALICE)
        assert conn is not None
        await run_sync(hub, conn, peer, doc_id, Document.load(doc.save()))
        connections[name] = (conn, peer)
    b, b_conn = connections["b"]
    everything = (hub.storage_id, "store-a", "store-liar", "store-elsewhere")
    await hub.handle(b, RemoteSubscriptionChange("b", "srv", add=everything))
    b_conn.inbox.clear()
    fake = RemoteHeads(("1111",), 1)
    claims = {sid: fake for sid in everything}
    liar, _ = connections["liar"]
    await hub.handle(liar, RemoteHeadsChanged("liar", "srv", doc_id, claims))
    relayed = [m for m in b_conn.inbox if isinstance(m, RemoteHeadsChanged)]
    # Only the claims the server cannot check itself: the sender's own storage and
    # a third party's. Never the server's own storage, nor another connected peer's.
    assert len(relayed) == 1
    assert set(relayed[0].new_heads) == {"store-liar", "store-elsewhere"}


async def test_a_big_upload_is_worked_on_off_the_loop_while_others_are_answered() -> None:
    events: list[tuple[str, object]] = []
    storage = RecordingStorage(events)
    loop = asyncio.get_running_loop()
    hold_next = False
    held = asyncio.Event()
    release = threading.Event()

    async def compute(fn: Callable[[], object]) -> object:
        # The next call after `hold_next` is set does its work on the worker thread,
        # then waits there until the test releases it.
        nonlocal hold_next
        if not hold_next:
            return await asyncio.to_thread(fn)
        hold_next = False

        def work_then_wait() -> object:
            result = fn()
            loop.call_soon_threadsafe(held.set)
            assert release.wait(10_000 * MS), "the test never released the worker"
            return result

        return await asyncio.to_thread(work_then_wait)

    hub = new_hub(storage, compute=compute)
    conns = {name: Conn(events) for name in ("a", "b")}
    connections: dict[str, Connection] = {}
    for name, peer in conns.items():
        conn = await hub.join(peer, JoinMessage(name, PeerMetadata(), ("1",)), ALICE)
        assert conn is not None
        connections[name] = conn
    big_id, other_id = new_document_id(), new_document_id()
    big = make_changes(3)
    await run_sync(hub, connections["a"], conns["a"], big_id, big)
    other = make_changes(5)
    await run_sync(hub, connections["b"], conns["b"], other_id, Document.load(other.save()))
    # Peer a uploads thousands of changes in one sync message.
    actor = os.urandom(16)
    for seq in range(1, 3001):
        big.apply(encode_change(deps=big.heads, actor=actor, seq=seq, start_op=len(big) + 1))
    new = {c.hash for c in big.changes()} - {c.hash for c in storage.changes(big_id)}
    assert len(new) == 3000
    upload = AutomergeSyncMessage(heads=big.heads, changes=[c.raw for c in big.changes()])
    for peer in conns.values():
        peer.inbox.clear()
    events.clear()
    hold_next = True
    task = asyncio.create_task(
        hub.handle(connections["a"], SyncMessage("a", "srv", big_id, upload.encode()))
    )
    try:
        await asyncio.wait_for(held.wait(), 10_000 * MS)
        # While a's changes are applied on the worker, b asks for another document...
        fresh, state = Document(), SyncState()
        request = fresh.generate_sync_message(state)
        assert request is not None
        await asyncio.wait_for(
            hub.handle(
                connections["b"], SyncMessage("b", "srv", other_id, request, is_request=True)
            ),
            10_000 * MS,
        )
        # ... and is answered, with the document, before a's upload is committed.
        replies = [m for m in conns["b"].inbox if isinstance(m, SyncMessage)]
        assert replies and replies[0].document_id == other_id
        fresh.receive_sync_message(state, replies[0].data)
        assert sorted(fresh.heads) == sorted(other.heads)
        assert conns["a"].inbox == []
        assert not any(kind == "commit" for kind, _ in events)
    finally:
        release.set()
        await task
    kinds = [
        "commit" if kind == "commit" else f"send-{value.target_id}"  # type: ignore[attr-defined]
        for kind, value in events
    ]
    assert kinds.index("send-b") < kinds.index("commit") < kinds.index("send-a")
    assert new <= {c.hash for c in storage.changes(big_id)}
    reply = next(m for m in conns["a"].inbox if isinstance(m, SyncMessage))
    assert sorted(AutomergeSyncMessage.decode(reply.data).heads) == sorted(big.heads)


async def test_a_writers_connections_share_one_orphan_share() -> None:
    o = await OrphanHub.start(("a1", ALICE), ("a2", ALICE), ("b", BOB))
    hub, doc_id, connections = o.hub, o.doc_id, o.connections
    entry = hub.cache[doc_id]
    upload, errors = o.upload, o.errors

    # Alice's first connection fills her share; her second one gets no more.
    a_chain = list(make_changes(21).changes())
    await hub.handle(connections["a1"], upload("a1", [c.raw for c in a_chain[1:11]]))
    assert errors("a1") == [] and entry.doc.queued == 10
    await hub.handle(connections["a2"], upload("a2", [c.raw for c in a_chain[11:21]]))
    refused = errors("a2")
    assert len(refused) == 1 and refused[0].document_id == doc_id
    assert entry.doc.queued == 10
    # Bob's share is his own.
    b_chain = list(make_changes(11).changes())
    await hub.handle(connections["b"], upload("b", [c.raw for c in b_chain[1:]]))
    assert errors("b") == [] and entry.doc.queued == 20
    # Alice's orphans stay while one of her connections is left, and go with the last.
    await hub.leave(connections["a1"])
    assert entry.doc.queued == 20
    await hub.leave(connections["a2"])
    assert entry.doc.queued == 10
    await hub.handle(connections["b"], upload("b", [b_chain[0].raw]))
    assert errors("b") == [] and entry.doc.queued == 0


async def test_pending_requests_are_bounded_and_pin_nothing() -> None:
    storage = MemoryStorage()
    hub = new_hub(
        storage,
        max_cached_documents=10,
        max_pending_requests=200,
        max_pending_requests_per_peer=50,
    )
    request = Document().generate_sync_message(SyncState())
    assert request is not None
    askers = []
    for i in range(10):
        peer = Conn([])
        conn = await hub.join(peer, JoinMessage(f"asker-{i}", PeerMetadata(), ("1",)), None)
        assert conn is not None
        for _ in range(100):
            await hub.handle(
                conn, SyncMessage(conn.peer_id, "srv", new_document_id(), request, True)
            )
        # Every request is answered, remembered or not.
        assert sum(isinstance(m, DocUnavailableMessage) for m in peer.inbox) == 100
        askers.append(conn)
    assert len(hub.waiting) == 200 and hub.waiting.documents() == 200
    # Each peer's share is capped (50), and once the total is reached newcomers take
    # room from whoever holds the most: the first askers cannot lock the others out.
    assert [hub.waiting.of(p) for p in askers] == [20] * 10
    # Unknown documents are not held in the document cache.
    assert len(hub.cache) <= 10
    # An unrelated user still syncs, and the document is stored.
    peer = Conn([])
    alice = await hub.join(peer, JoinMessage("alice", PeerMetadata(), ("1",)), ALICE)
    assert alice is not None
    doc_id, doc = new_document_id(), make_changes(3)
    await run_sync(hub, alice, peer, doc_id, doc)
    assert await hub.export(doc_id) == doc.save()
    for conn in askers:
        await hub.leave(conn)
    assert len(hub.waiting) == 0 and hub.waiting.documents() == 0


async def test_eviction_order_holds_no_pinned_document() -> None:
    storage = MemoryStorage()
    hub = new_hub(storage, max_cached_documents=5)
    peer = Conn([])
    conn = await hub.join(peer, JoinMessage("p", PeerMetadata(), ("1",)), ALICE)
    assert conn is not None
    pinned = []
    for _ in range(30):
        doc_id = new_document_id()
        await run_sync(hub, conn, peer, doc_id, make_changes(1))
        pinned.append(doc_id)
    for _ in range(50):
        hub.cache.entry(new_document_id())
    # Every document the peer syncs stays; the others beyond the bound went, and
    # the eviction order no longer lists the pinned ones (it would scan them all
    # on every call otherwise).
    assert set(pinned) <= set(hub.cache)
    assert len(hub.cache) <= 30 + 5
    assert hub.cache.idle_count() <= 5
    await hub.leave(conn)
    # Once nobody syncs them they are evictable again.
    hub.cache.entry(new_document_id())
    assert len(hub.cache) <= 5


async def test_sessions_on_documents_not_stored_yet_are_bounded_and_shared() -> None:
    storage = MemoryStorage()
    hub = new_hub(
        storage,
        max_cached_documents=5,
        max_pending_requests=30,
        max_pending_requests_per_peer=20,
    )
    # Heads nobody has: the hub asks for the changes and keeps a session meanwhile.
    offer = AutomergeSyncMessage(heads=[os.urandom(32)]).encode()
    connections = []
    for name in ("a", "b"):
        peer = Conn([])
        conn = await hub.join(peer, JoinMessage(name, PeerMetadata(), ("1",)), ALICE)
        assert conn is not None
        for _ in range(40):
            await hub.handle(conn, SyncMessage(conn.peer_id, "srv", new_document_id(), offer))
        refused = [m for m in peer.inbox if isinstance(m, ErrorMessage)]
        assert all("not stored yet" in m.message for m in refused)
        connections.append((conn, peer))
    # a filled its share (20); b took the rest of the total and then room from a,
    # which held more, until both held as much.
    assert [len(p.sessions) for p, _ in connections] == [15, 15]
    assert len(hub.creating) == 30
    assert len(hub.cache) <= 5 + 30
    # Someone new still creates a document: room is taken from the biggest holder.
    peer = Conn([])
    carol = await hub.join(peer, JoinMessage("c", PeerMetadata(), ("1",)), BOB)
    assert carol is not None
    doc_id, doc = new_document_id(), make_changes(2)
    await run_sync(hub, carol, peer, doc_id, doc)
    assert await hub.export(doc_id) == doc.save()
    assert len(hub.creating) == 29  # its place is released once the document is stored
    for conn, _ in connections:
        await hub.leave(conn)
    assert len(hub.creating) == 0


async def test_sessions_per_connection_are_capped_and_released_on_leave() -> None:
    storage = MemoryStorage()
    hub = new_hub(storage, max_cached_documents=2, max_sessions_per_connection=3)
    # Five public documents, stored by Alice (one connection each: she is capped too).
    docs = {}
    for i in range(5):
        owner_peer = Conn([])
        owner = await hub.join(owner_peer, JoinMessage("owner", PeerMetadata(), ("1",)), ALICE)
        assert owner is not None
        doc_id, doc = new_document_id(), make_changes(i + 1)
        await run_sync(hub, owner, owner_peer, doc_id, doc)
        await hub.leave(owner)
        public = Access(owner=ALICE, public=True)
        storage.set_access(doc_id, public)
        await hub.access_changed(doc_id, public)
        docs[doc_id] = doc
    assert len(hub.cache) <= 2
    # An anonymous reader asks for all of them: three sessions open, the rest are
    # refused with an error naming the limit, and nothing of them is loaded for it.
    peer = Conn([])
    reader = await hub.join(peer, JoinMessage("reader", PeerMetadata(), ("1",)), None)
    assert reader is not None
    request = Document().generate_sync_message(SyncState())
    assert request is not None
    for doc_id in docs:
        await hub.handle(reader, SyncMessage("reader", "srv", doc_id, request, True))
    ids = list(docs)
    assert list(reader.sessions) == ids[:3]
    refused = [m for m in peer.inbox if isinstance(m, ErrorMessage)]
    assert [m.document_id for m in refused] == ids[3:]
    assert all(
        "already syncs 3 documents" in m.message and "max-sessions-per-connection = 3" in m.message
        for m in refused
    )
    assert not any(isinstance(m, SyncMessage) and m.document_id in ids[3:] for m in peer.inbox)
    # Its sessions pin their documents; the refused ones are not pinned.
    assert set(ids[:3]) <= set(hub.cache)
    assert all(hub.cache[d].connections == {"reader": reader} for d in ids[:3])
    assert len(hub.cache) <= 3 + 2
    # A message on a document it already syncs is still handled.
    await hub.handle(reader, SyncMessage("reader", "srv", ids[0], request, True))
    assert len([m for m in peer.inbox if isinstance(m, ErrorMessage)]) == 2
    # Another connection syncs the refused documents.
    other_peer = Conn([])
    other = await hub.join(other_peer, JoinMessage("other", PeerMetadata(), ("1",)), BOB)
    assert other is not None
    for doc_id in ids[3:]:
        copy = Document()
        await run_sync(hub, other, other_peer, doc_id, copy)
        assert copy.save() == docs[doc_id].save()
    assert not any(isinstance(m, ErrorMessage) for m in other_peer.inbox)
    # Once the reader leaves, its count and its pins are gone: its documents are
    # evictable again.
    await hub.leave(reader)
    await hub.leave(other)
    assert reader.sessions == {}
    assert all(not hub.cache[d].connections for d in hub.cache)
    assert len(hub.cache) <= 2
    assert hub.cache.idle_count() == len(hub.cache)


async def test_waiting_request_woken_beyond_the_session_cap_is_refused() -> None:
    storage = MemoryStorage()
    hub = new_hub(storage, max_sessions_per_connection=1)
    first, second = new_document_id(), new_document_id()
    for doc_id in (first, second):
        # One connection per document: Alice too may sync only one at a time.
        alice_peer = Conn([])
        alice = await hub.join(alice_peer, JoinMessage("alice", PeerMetadata(), ("1",)), ALICE)
        assert alice is not None
        await run_sync(hub, alice, alice_peer, doc_id, make_changes(1))
        await hub.leave(alice)
    peer = Conn([])
    bob = await hub.join(peer, JoinMessage("bob", PeerMetadata(), ("1",)), BOB)
    assert bob is not None
    request = Document().generate_sync_message(SyncState())
    assert request is not None
    # Bob may not read the second document yet: he waits for it.
    public = Access(owner=ALICE, public=True)
    storage.set_access(first, public)
    await hub.access_changed(first, public)
    await hub.handle(bob, SyncMessage("bob", "srv", second, request, True))
    assert hub.waiting.of(bob) == 1
    await hub.handle(bob, SyncMessage("bob", "srv", first, request, True))
    assert list(bob.sessions) == [first]
    # Granted access, the waiting request would open a second session: refused.
    access = Access(owner=ALICE, readers=frozenset({BOB}))
    storage.set_access(second, access)
    await hub.access_changed(second, access)
    assert list(bob.sessions) == [first] and hub.waiting.of(bob) == 0
    refused = [m for m in peer.inbox if isinstance(m, ErrorMessage)]
    assert [m.document_id for m in refused] == [second]
    assert "max-sessions-per-connection = 1" in refused[0].message
