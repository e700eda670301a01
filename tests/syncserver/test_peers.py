"""Join, reconnect and dispatch rules without a hub or a socket."""

from __future__ import annotations

from hearth.types import Did
from syncserver.messages import (
    EphemeralMessage,
    ErrorMessage,
    JoinMessage,
    PeerMessage,
    PeerMetadata,
    SyncMessage,
    UnknownMessage,
)
from syncserver.peers import (
    CLOSE_NO_COMMON_VERSION,
    CLOSE_PEER_ID_TAKEN,
    Connection,
    ConnectionTable,
    Route,
    route,
)
from tests.syncserver.ids import new_document_id

ALICE = Did("did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK")
BOB = Did("did:key:z6MkpTHR8VNsBxYAAWHut2Geadd9jSwuBV8xRoAnwWsdvktH")


def join(peer_id: str, versions: tuple[str, ...] = ("1",)) -> JoinMessage:
    return JoinMessage(peer_id, PeerMetadata(), versions)


def connection(peer_id: str, did: Did | None) -> Connection:
    return Connection(peer_id, did, PeerMetadata(), peer=None)  # type: ignore[arg-type]


def test_a_peer_id_is_replaced_only_by_the_same_did() -> None:
    table = ConnectionTable()
    assert table.refuse_join(join("p"), ALICE) is None
    alice = connection("p", ALICE)
    table.add(alice)

    # Alice's reconnect replaces her old connection; anyone else is refused.
    assert table.refuse_join(join("p"), ALICE) is None and table.replaced(join("p")) is alice
    refused = table.refuse_join(join("p"), BOB)
    assert refused is not None and refused.code == CLOSE_PEER_ID_TAKEN
    assert refused.metric == "peer_id_taken" and "another identity" in refused.text
    assert table.refuse_join(join("p"), None) is not None

    # Two anonymous peers cannot prove they are the same: the second waits.
    table.remove(alice)
    assert alice.closed and len(table) == 0
    table.add(connection("p", None))
    anonymous = table.refuse_join(join("p"), None)
    assert anonymous is not None and "anonymously" in anonymous.text

    no_version = ConnectionTable().refuse_join(join("q", ("0",)), ALICE)
    assert no_version is not None and no_version.code == CLOSE_NO_COMMON_VERSION


def test_orphans_pass_to_another_connection_of_the_same_writer() -> None:
    table = ConnectionTable()
    first, second, bob = connection("a1", ALICE), connection("a2", ALICE), connection("b", BOB)
    for conn in (first, second, bob):
        table.add(conn)
    table.remove(first)
    assert table.heir(first.source) is second
    table.remove(second)
    assert table.heir(first.source) is None
    assert table.of_did(BOB) == [bob]


def test_dispatch_before_and_after_join() -> None:
    doc_id = new_document_id()
    sync = SyncMessage("p", "srv", doc_id, b"")
    assert route(None, join("p")) == Route("join")
    assert route(None, sync) == Route("refuse", "send join first", "not_joined")
    for ignored in (
        UnknownMessage("x"),
        ErrorMessage("p", "srv", "?"),
        PeerMessage("p", "srv", PeerMetadata()),
    ):
        assert route(None, ignored).action == "ignore"
    alice = connection("p", ALICE)
    assert route(alice, sync) == Route("handle")
    assert route(alice, join("p")) == Route("join")
    spoofed = EphemeralMessage("someone-else", "srv", doc_id, "s", 1, b"")
    assert route(alice, spoofed).metric == "wrong_sender"
