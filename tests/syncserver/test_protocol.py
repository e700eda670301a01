"""The wire protocol, driven by hand: handshake, bad input, re-joins, ephemeral, remote heads."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import cbor2
import httpx
import pytest
import websockets

from hearth.base58 import b58check_encode
from hearth.jwt import Signer
from syncserver.automerge import Document, SyncMessage, SyncState
from syncserver.automerge.chunk import encode_change
from tests.syncserver.helpers import (
    TIMEOUT,
    RawPeer,
    RunningServer,
    metric,
    running_server,
)
from tests.syncserver.ids import new_document_id


def sync_frame(peer: RawPeer, doc_id: str, data: bytes, kind: str = "sync") -> dict[str, Any]:
    return {
        "type": kind,
        "senderId": peer.peer_id,
        "targetId": peer.server_peer_id,
        "documentId": doc_id,
        "data": data,
    }


def make_changes(n: int) -> Document:
    """A document of `n` changes by one new actor."""
    doc = Document()
    actor = os.urandom(16)
    for seq in range(1, n + 1):
        doc.apply(encode_change(deps=doc.heads, actor=actor, seq=seq, start_op=seq))
    return doc


def child_change(doc: Document) -> bytes:
    """A change by a new actor on top of `doc`'s heads."""
    return encode_change(deps=doc.heads, actor=os.urandom(16), seq=1, start_op=len(doc) + 1)


async def sync_until_acked(peer: RawPeer, doc_id: str, doc: Document) -> SyncState:
    """Run the sync protocol with the server until it acknowledges all our heads."""
    state = SyncState()
    first = doc.generate_sync_message(state)
    assert first is not None
    await peer.send_raw(sync_frame(peer, doc_id, first))
    while state.their_heads is None or sorted(state.their_heads) != sorted(doc.heads):
        msg = await peer.recv()
        assert msg["type"] == "sync", msg
        doc.receive_sync_message(state, msg["data"])
        reply = doc.generate_sync_message(state)
        if reply is not None:
            await peer.send_raw(sync_frame(peer, doc_id, reply))
    return state


async def expect_closed(peer: RawPeer) -> int | None:
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            await asyncio.wait_for(peer.ws.recv(), TIMEOUT)
    return peer.ws.close_code


async def test_handshake(server: RunningServer) -> None:
    async with RawPeer.connect(server.ws(), "p1", join=False) as peer:
        await peer.send_raw(
            {
                "type": "join",
                "senderId": "p1",
                "peerMetadata": {"storageId": cbor2.undefined, "isEphemeral": True},
                "supportedProtocolVersions": ["1"],
            }
        )
        reply = await peer.recv()
    assert reply["type"] == "peer"
    assert reply["targetId"] == "p1"
    assert reply["selectedProtocolVersion"] == "1"
    assert reply["peerMetadata"]["isEphemeral"] is False
    assert reply["peerMetadata"]["storageId"]
    async with RawPeer.connect(server.ws_url + "/sync", "p2") as peer:
        assert peer.server_peer_id == reply["senderId"]


async def test_storage_id_survives_restart(tmp_path: Path) -> None:
    ids = []
    for _ in range(2):
        async with running_server(tmp_path) as srv, RawPeer.connect(srv.ws()) as peer:
            await peer.send_raw({"type": "join", "senderId": "again"})
            ids.append((await peer.recv())["peerMetadata"]["storageId"])
    assert ids[0] == ids[1]


async def test_no_common_version_is_an_error_and_close(server: RunningServer) -> None:
    async with RawPeer.connect(server.ws(), "p1", join=False) as peer:
        await peer.send_raw({"type": "join", "senderId": "p1", "supportedProtocolVersions": ["2"]})
        reply = await peer.recv()
        assert reply["type"] == "error"
        assert "1" in reply["message"]
        assert await expect_closed(peer) == 1002


async def test_messages_before_join_are_refused(server: RunningServer) -> None:
    doc_id = new_document_id()
    async with RawPeer.connect(server.ws(), "p1", join=False) as peer:
        request = Document().generate_sync_message(SyncState())
        assert request is not None
        await peer.send_raw(
            {
                "type": "request",
                "senderId": "p1",
                "targetId": "x",
                "documentId": doc_id,
                "data": request,
            }
        )
        assert (await peer.recv())["type"] == "error"


async def test_big_frames_before_join_close_the_socket(tmp_path: Path) -> None:
    async with running_server(tmp_path, max_unjoined_message_size=1000) as server:
        async with RawPeer.connect(server.ws(), "p1", join=False) as peer:
            await peer.ws.send(cbor2.dumps({"type": "x", "pad": b"\x00" * 1001}))
            reply = await peer.recv()
            assert reply["type"] == "error" and "before join" in reply["message"]
            assert await expect_closed(peer) == 1009
        # After a join the same frame is an ordinary (ignored) message.
        async with RawPeer.connect(server.ws(), "p2") as peer:
            await peer.ws.send(cbor2.dumps({"type": "x", "pad": b"\x00" * 1001}))
            request = Document().generate_sync_message(SyncState())
            assert request is not None
            await peer.send_raw(sync_frame(peer, new_document_id(), request, "request"))
            assert (await peer.recv())["type"] == "doc-unavailable"
        assert (
            await metric(server, "hearth_syncserver_refused_total", reason="unjoined_too_big") == 1
        )


async def test_connections_beyond_the_limit_get_503_before_the_upgrade(tmp_path: Path) -> None:
    async with running_server(tmp_path, max_connections=1) as server:
        async with RawPeer.connect(server.ws(), "p1") as first:
            with pytest.raises(websockets.InvalidStatus) as err:
                async with RawPeer.connect(server.ws(), "p2", join=False):
                    pass
            assert err.value.response.status_code == 503
            # The connection already in is served as before.
            request = Document().generate_sync_message(SyncState())
            assert request is not None
            await first.send_raw(sync_frame(first, new_document_id(), request, "request"))
            assert (await first.recv())["type"] == "doc-unavailable"
        assert await metric(server, "hearth_syncserver_refused_total", reason="server_full") == 1


async def test_request_for_unknown_document_is_unavailable(server: RunningServer) -> None:
    doc_id = new_document_id()
    async with RawPeer.connect(server.ws()) as peer:
        request = Document().generate_sync_message(SyncState())
        assert request is not None
        await peer.send_raw(sync_frame(peer, doc_id, request, "request"))
        reply = await peer.recv()
    assert reply == {
        "type": "doc-unavailable",
        "senderId": peer.server_peer_id,
        "targetId": "raw-peer",
        "documentId": doc_id,
    }


async def test_upload_is_acknowledged_and_stored(server: RunningServer) -> None:
    token = await server.token_for(signer := Signer.generate())
    doc_id = new_document_id()
    doc = make_changes(20)
    async with RawPeer.connect(server.ws(token)) as peer:
        await sync_until_acked(peer, doc_id, doc)
    r = await server.xrpc("GET", "export", signer, params={"documentId": doc_id})
    assert Document.load(r.content).heads == doc.heads
    assert r.content == doc.save()


async def test_rejoin_with_the_same_peer_id_replaces_the_old_socket(server: RunningServer) -> None:
    url = server.ws(await server.token_for(Signer.generate()))
    async with RawPeer.connect(url, "same") as first:
        async with RawPeer.connect(url, "same") as second:
            assert await expect_closed(first) == 1000
            request = Document().generate_sync_message(SyncState())
            assert request is not None
            await second.send_raw(sync_frame(second, new_document_id(), request, "request"))
            assert (await second.recv())["type"] == "doc-unavailable"
            assert await metric(server, "hearth_syncserver_peers") == 1


ANON_JOIN = {
    "type": "join",
    "senderId": "anon",
    "peerMetadata": {"isEphemeral": True},
    "supportedProtocolVersions": ["1"],
}


async def test_an_anonymous_peer_id_is_not_taken_over_until_its_socket_is_gone(
    server: RunningServer,
) -> None:
    request = Document().generate_sync_message(SyncState())
    assert request is not None
    async with RawPeer.connect(server.ws(), "anon") as first:
        async with RawPeer.connect(server.ws(), "anon", join=False) as intruder:
            await intruder.send_raw(ANON_JOIN)
            error = await intruder.recv()
            assert error["type"] == "error" and "anonymously" in error["message"]
            assert await expect_closed(intruder) == 1008
        # The first socket was not kicked off: it is still served.
        await first.send_raw(sync_frame(first, new_document_id(), request, "request"))
        assert (await first.recv())["type"] == "doc-unavailable"
    # Once it is gone, a reconnect with the same peerId (what automerge-repo does)
    # gets in; the server may notice the close a moment after the client does.
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while True:
        async with RawPeer.connect(server.ws(), "anon", join=False) as again:
            await again.send_raw(ANON_JOIN)
            reply = await again.recv()
            if reply["type"] == "peer":
                break
            assert reply["type"] == "error"
            assert asyncio.get_running_loop().time() < deadline, "old socket never released"


BAD_FRAMES: list[bytes] = [
    b"\xff\xfe garbage",
    cbor2.dumps([1, 2, 3]),
    cbor2.dumps({"type": "sync", "senderId": "raw-peer", "targetId": "s", "documentId": 7}),
    cbor2.dumps(
        {
            "type": "ephemeral",
            "senderId": "raw-peer",
            "targetId": "s",
            "documentId": "x",
            "count": "one",
            "sessionId": 1,
            "data": b"",
        }
    ),
    b"\x9f" * 100_000,
]


async def test_bad_input_gets_an_error_and_everyone_else_is_served(tmp_path: Path) -> None:
    async with running_server(tmp_path, max_message_size=200_000) as server:
        token = await server.token_for(Signer.generate())
        doc_id = new_document_id()
        async with RawPeer.connect(server.ws(token), "bystander") as bystander:
            async with RawPeer.connect(server.ws(), "bad") as bad:
                for frame in BAD_FRAMES:
                    await bad.ws.send(frame)
                    reply = await bad.recv()
                    assert reply["type"] == "error", reply
                    assert reply["message"].startswith("malformed message")
                # Text frames, a sync message whose data is garbage, a wrong senderId.
                await bad.ws.send("hello")
                assert (await bad.recv())["type"] == "error"
                await bad.send_raw(sync_frame(bad, doc_id, b"\x42\x05garbage"))
                reply = await bad.recv()
                assert reply["type"] == "error" and reply["documentId"] == doc_id
                await bad.send_raw({**sync_frame(bad, doc_id, b"\x42"), "senderId": "someone"})
                assert "senderId" in (await bad.recv())["message"]
                # Unknown types are ignored: the next reply answers the request after it.
                await bad.send_raw({"type": "leave", "senderId": "bad", "targetId": "s"})
                request = Document().generate_sync_message(SyncState())
                assert request is not None
                await bad.send_raw(sync_frame(bad, doc_id, request, "request"))
                assert (await bad.recv())["type"] == "doc-unavailable"
                # Oversize frames close that socket with 1009 (message too big).
                await bad.ws.send(b"\x00" * 300_000)
                assert await expect_closed(bad) == 1009
            # Meanwhile the bystander syncs as if nothing happened.
            doc = make_changes(5)
            await sync_until_acked(bystander, doc_id, doc)
        assert await metric(server, "hearth_syncserver_refused_total", reason="malformed") >= 6


async def test_non_writer_changes_get_an_error_naming_the_document(
    server: RunningServer,
) -> None:
    alice, bob = Signer.generate(), Signer.generate()
    doc_id = new_document_id()
    doc = make_changes(3)
    async with RawPeer.connect(server.ws(await server.token_for(alice)), "alice") as peer:
        await sync_until_acked(peer, doc_id, doc)
    r = await server.xrpc(
        "POST", "setAccess", alice, body={"documentId": doc_id, "readers": [bob.did_key]}
    )
    assert r.status_code == 200
    chunk = child_change(doc)
    async with RawPeer.connect(server.ws(await server.token_for(bob)), "bob") as peer:
        state = SyncState()
        message = doc.generate_sync_message(state)
        assert message is not None
        parsed = SyncMessage.decode(message)
        parsed.changes = [chunk]
        await peer.send_raw(sync_frame(peer, doc_id, parsed.encode()))
        reply = await peer.recv()
        assert reply["type"] == "error"
        assert reply["documentId"] == doc_id and doc_id in reply["message"]
    r = await server.xrpc("GET", "export", alice, params={"documentId": doc_id})
    assert r.content == doc.save()


async def test_ephemeral_is_deduplicated_and_forwarded(server: RunningServer) -> None:
    token = await server.token_for(Signer.generate())
    doc_id = new_document_id()
    async with (
        RawPeer.connect(server.ws(token), "a") as a,
        RawPeer.connect(server.ws(token), "b") as b,
        RawPeer.connect(server.ws(token), "c") as c,
    ):
        await sync_until_acked(a, doc_id, doc := make_changes(2))
        for peer in (b, c):
            await sync_until_acked(peer, doc_id, Document.load(doc.save()))

        def eph(count: int) -> dict[str, Any]:
            return {
                "type": "ephemeral",
                "senderId": "a",
                "targetId": a.server_peer_id,
                "documentId": doc_id,
                "sessionId": "s1",
                "count": count,
                "data": cbor2.dumps({"cursor": count}),
            }

        await a.send_raw(eph(1))
        await a.send_raw(eph(1))  # a duplicate
        await a.send_raw(eph(2))
        for peer in (b, c):
            got = [await peer.recv(), await peer.recv()]
            assert [m["count"] for m in got] == [1, 2]
            assert all(m["senderId"] == "a" and m["targetId"] == peer.peer_id for m in got)
            assert cbor2.loads(got[0]["data"]) == {"cursor": 1}
        # Never echoed to the sender: its next message is the answer to its request.
        request = Document().generate_sync_message(SyncState())
        assert request is not None
        await a.send_raw(sync_frame(a, new_document_id(), request, "request"))
        assert (await a.recv())["type"] == "doc-unavailable"


async def test_remote_heads_reach_subscribers(server: RunningServer) -> None:
    token = await server.token_for(Signer.generate())
    doc_id = new_document_id()
    doc = make_changes(2)
    async with (
        RawPeer.connect(server.ws(token), "a", storage_id="store-a") as a,
        RawPeer.connect(server.ws(token), "b") as b,
    ):
        await sync_until_acked(a, doc_id, doc)
        await sync_until_acked(b, doc_id, Document.load(doc.save()))
        await b.send_raw(
            {
                "type": "remote-subscription-change",
                "senderId": "b",
                "targetId": b.server_peer_id,
                "add": ["store-a"],
            }
        )
        doc.apply(child_change(doc))
        await sync_until_acked(a, doc_id, doc)
        while True:
            msg = await b.recv()
            if msg["type"] == "remote-heads-changed":
                break
        assert msg["documentId"] == doc_id
        assert msg["newHeads"]["store-a"]["heads"] == [b58check_encode(h) for h in doc.heads]


async def test_metrics_and_health(server: RunningServer) -> None:
    token = await server.token_for(Signer.generate())
    doc = make_changes(7)
    async with RawPeer.connect(server.ws(token)) as peer:
        await sync_until_acked(peer, new_document_id(), doc)
        assert await metric(server, "hearth_syncserver_peers") == 1
    assert await metric(server, "hearth_syncserver_documents") == 1
    assert await metric(server, "hearth_syncserver_changes_stored") == 7
    assert await metric(server, "hearth_syncserver_change_bytes_stored") == len(doc.save())
    assert await metric(server, "hearth_syncserver_bytes_in_total") > len(doc.save())
    assert await metric(server, "hearth_syncserver_bytes_out_total") > 0
    assert await metric(server, "hearth_syncserver_sync_rounds_total") >= 2
    async with httpx.AsyncClient() as http:
        health = (await http.get(server.url + "/xrpc/_health")).json()
    assert health["documents"] == 1 and health["storageId"]


async def test_a_slow_consumer_is_closed_and_others_keep_going(tmp_path: Path) -> None:
    async with running_server(tmp_path, send_queue_bytes=256 * 1024) as server:
        token = await server.token_for(Signer.generate())
        doc_id = new_document_id()
        doc = make_changes(2)
        async with (
            RawPeer.connect(server.ws(token), "talker") as talker,
            RawPeer.connect(server.ws(token), "sleeper") as sleeper,
            RawPeer.connect(server.ws(token), "listener") as listener,
        ):
            for peer in (talker, sleeper, listener):
                await sync_until_acked(peer, doc_id, Document.load(doc.save()))
            blob = os.urandom(64 * 1024)
            sent = 0
            # The sleeper never reads; the listener does. Talk until the server gives up
            # on the sleeper (its queue passed the bound once the TCP buffers filled).
            while (
                await metric(server, "hearth_syncserver_refused_total", reason="slow_consumer") < 1
            ):
                for _ in range(20):
                    sent += 1
                    await talker.send_raw(
                        {
                            "type": "ephemeral",
                            "senderId": "talker",
                            "targetId": talker.server_peer_id,
                            "documentId": doc_id,
                            "sessionId": "s",
                            "count": sent,
                            "data": blob,
                        }
                    )
                    assert (await listener.recv())["count"] == sent
                assert sent < 2000, "the slow consumer was never closed"
            assert await expect_closed(sleeper) == 1008
            # The others still sync.
            doc.apply(child_change(doc))
            await sync_until_acked(talker, doc_id, doc)


async def test_a_request_for_a_missing_document_is_answered_when_it_arrives(
    server: RunningServer,
) -> None:
    token = await server.token_for(Signer.generate())
    doc_id = new_document_id()
    async with (
        RawPeer.connect(server.ws(token), "early") as early,
        RawPeer.connect(server.ws(token), "author") as author,
    ):
        mine = Document()
        state = SyncState()
        request = mine.generate_sync_message(state)
        assert request is not None
        await early.send_raw(sync_frame(early, doc_id, request, "request"))
        assert (await early.recv())["type"] == "doc-unavailable"
        doc = make_changes(4)
        await sync_until_acked(author, doc_id, doc)
        # The server starts syncing with the peer that asked, on its own.
        state = SyncState()
        while sorted(mine.heads) != sorted(doc.heads):
            msg = await early.recv()
            assert msg["type"] == "sync"
            mine.receive_sync_message(state, msg["data"])
            reply = mine.generate_sync_message(state)
            if reply is not None:
                await early.send_raw(sync_frame(early, doc_id, reply))
        assert mine.save() == doc.save()


async def test_sessions_beyond_the_per_connection_cap_are_refused(tmp_path: Path) -> None:
    async with running_server(tmp_path, max_sessions_per_connection=2) as server:
        token = await server.token_for(Signer.generate())
        docs = {}
        for i in range(3):
            # One connection per document: the writer is capped too.
            async with RawPeer.connect(server.ws(token), f"writer-{i}") as writer:
                doc_id, doc = new_document_id(), make_changes(i + 1)
                await sync_until_acked(writer, doc_id, doc)
                docs[doc_id] = doc
        request = Document().generate_sync_message(SyncState())
        assert request is not None
        async with RawPeer.connect(server.ws(token), "reader") as reader:
            for doc_id in docs:
                await reader.send_raw(sync_frame(reader, doc_id, request, "request"))
            replies = [await reader.recv() for _ in docs]
            kinds = sorted(r["type"] for r in replies)
            assert kinds == ["error", "sync", "sync"], replies
            (refused,) = [r for r in replies if r["type"] == "error"]
            assert "max-sessions-per-connection = 2" in refused["message"]
            # The refused document still syncs on another connection.
            async with RawPeer.connect(server.ws(token), "other") as other:
                copy = Document()
                await sync_until_acked(other, refused["documentId"], copy)
                assert copy.save() == docs[refused["documentId"]].save()
