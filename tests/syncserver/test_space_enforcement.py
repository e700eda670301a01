"""Space authority on documents at a real syncserver (port 0, real sockets): documents
bound to a space (`chat.hearth.v1.space.bindDocument`) take their access from the
space's state, changes must carry an actor bound to the sender's DID, and a ban ends
the banned member's open sessions at once (docs/spaces.md "Enforcement at the
syncserver")."""

from __future__ import annotations

import secrets
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hearth.spaces.encoding import actor_for
from hearth.spaces.ops import (
    Ban,
    BindActor,
    Join,
    JoinPolicy,
    Kick,
    Rank,
    SetJoinPolicy,
    SetRole,
)
from syncserver.automerge import Document, SyncMessage, SyncState
from syncserver.automerge.chunk import encode_change
from tests.syncserver.helpers import (
    RawPeer,
    RunningServer,
    running_server,
    server_at,
    server_process,
)
from tests.syncserver.ids import new_document_id
from tests.syncserver.spaces_world import Person, Space, SpacesClient, statuses
from tests.syncserver.test_protocol import sync_frame, sync_until_acked

NO_INVITE = Join(None, None, None)


@dataclass
class World:
    alice: Person  # owner
    bob: Person  # member
    carol: Person  # moderator
    mallory: Person  # not a member
    space: Space
    actors: dict[str, bytes]  # name -> bound Automerge actor id


async def approval_space(c: SpacesClient) -> World:
    """Alice's space: Bob and Carol joined, Carol moderates, each of the three bound
    an actor; then the policy became `approval`. Stored at the server."""
    alice, bob, carol, mallory = (Person(n) for n in ("alice", "bob", "carol", "mallory"))
    s = Space(alice)
    ops = [s.create, s.write(bob, NO_INVITE), s.write(carol, NO_INVITE)]
    ops.append(s.write(alice, SetRole(carol.did, Rank.MODERATOR)))
    actors: dict[str, bytes] = {}
    for p in (alice, bob, carol):
        nonce = secrets.token_hex(8)
        actor = actor_for(s.id, p.did, nonce)
        actors[p.name] = bytes.fromhex(actor)
        ops.append(s.write(p, BindActor(actor, nonce)))
    ops.append(s.write(alice, SetJoinPolicy(JoinPolicy.APPROVAL)))
    answer = await c.submit(alice, s.id, *ops)
    assert all(st == "accepted" for st, _ in statuses(answer)), answer
    return World(alice, bob, carol, mallory, s, actors)


def change(doc: Document, actor: bytes, seq: int = 1) -> bytes:
    """The `seq`th change by `actor`, on top of `doc`'s heads (not applied)."""
    return encode_change(deps=doc.heads, actor=actor, seq=seq, start_op=len(doc) + 1)


async def upload(srv: RunningServer, c: SpacesClient, who: Person) -> tuple[str, Document]:
    """A new document of one change, created by `who` (so owned by them)."""
    doc = Document()
    doc.apply(encode_change(deps=[], actor=secrets.token_bytes(16), seq=1, start_op=1))
    doc_id = new_document_id()
    async with RawPeer.connect(srv.ws(await c.token(who)), f"{who.name}-up") as peer:
        await sync_until_acked(peer, doc_id, doc)
    return doc_id, doc


async def bind(c: SpacesClient, who: Person, doc_id: str, space: str) -> Any:
    r = await c.call(who, "POST", "bindDocument", body={"documentId": doc_id, "space": space})
    return r.status_code, r.json()


async def push(peer: RawPeer, doc_id: str, doc: Document, chunk: bytes) -> dict[str, Any]:
    """Send `chunk` (on top of `doc`) in one sync message; the server's answer."""
    message = doc.generate_sync_message(SyncState())
    assert message is not None
    parsed = SyncMessage.decode(message)
    parsed.changes = [chunk]
    await peer.send_raw(sync_frame(peer, doc_id, parsed.encode()))
    return await peer.recv()


async def request(peer: RawPeer, doc_id: str) -> dict[str, Any]:
    message = Document().generate_sync_message(SyncState())
    assert message is not None
    await peer.send_raw(sync_frame(peer, doc_id, message, "request"))
    return await peer.recv()


async def stored(srv: RunningServer, who: Person, doc_id: str) -> Document:
    r = await srv.xrpc("GET", "export", who.signer, params={"documentId": doc_id})
    assert r.status_code == 200, r.text
    return Document.load(r.content)


def hash_of(doc: Document, chunk: bytes) -> bytes:
    copy = Document.load(doc.save())
    (h,) = copy.apply(chunk)
    return h


async def test_members_write_bound_actors_bans_end_sessions_and_survive_restart(
    tmp_path: Path,
) -> None:
    async with running_server(tmp_path) as srv:
        c = SpacesClient(srv.url, srv.did)
        w = await approval_space(c)
        space_doc, _ = await upload(srv, c, w.alice)
        channel, doc = await upload(srv, c, w.alice)
        unbound, _ = await upload(srv, c, w.alice)
        assert await bind(c, w.alice, space_doc, w.space.id) == (
            200,
            {"documentId": space_doc, "space": w.space.id},
        )
        assert (await bind(c, w.alice, channel, w.space.id))[0] == 200
        assert (await bind(c, w.alice, channel, w.space.id))[0] == 200  # again: no-op
        r = await srv.xrpc("GET", "getAccess", w.alice.signer, params={"documentId": channel})
        assert r.json()["space"] == w.space.id
        r = await srv.xrpc("GET", "getAccess", w.alice.signer, params={"documentId": unbound})
        assert "space" not in r.json()

        # A member with a bound actor writes: stored.
        async with RawPeer.connect(srv.ws(await c.token(w.bob)), "bob") as bob:
            reply = await request(bob, channel)
            assert reply["type"] == "sync", reply
            by_bob = change(doc, w.actors["bob"])
            reply = await push(bob, channel, doc, by_bob)
            assert reply["type"] == "sync", reply
            h = hash_of(doc, by_bob)
            doc.apply(by_bob)
            assert (await stored(srv, w.alice, channel)).get_change(h) is not None

            # Carol forges a change with Bob's actor: refused, nothing stored.
            async with RawPeer.connect(srv.ws(await c.token(w.carol)), "carol") as carol:
                forged = change(doc, w.actors["bob"], 2)
                reply = await push(carol, channel, doc, forged)
                assert reply["type"] == "error" and "bound to another DID" in reply["message"]
                unbound_actor = change(doc, secrets.token_bytes(16))
                reply = await push(carol, channel, doc, unbound_actor)
                assert reply["type"] == "error" and "not bound" in reply["message"]
                held = await stored(srv, w.alice, channel)
                assert held.get_change(hash_of(doc, forged)) is None
                assert held.get_change(hash_of(doc, unbound_actor)) is None
                assert sorted(held.heads) == sorted(doc.heads)

                # A non-member reads nothing of an approval space.
                async with RawPeer.connect(srv.ws(await c.token(w.mallory)), "mal") as mal:
                    assert (await request(mal, channel))["type"] == "doc-unavailable"
                    assert (await request(mal, space_doc))["type"] == "doc-unavailable"
                    # Unbound documents behave as before: the owner's rules.
                    assert (await request(mal, unbound))["type"] == "doc-unavailable"
                    r = await srv.xrpc(
                        "POST",
                        "setAccess",
                        w.alice.signer,
                        body={"documentId": unbound, "readers": [w.mallory.did]},
                    )
                    assert r.status_code == 200
                    reply = await mal.recv()  # woken: the request is answered now
                    assert reply["type"] == "sync" and reply["documentId"] == unbound

                # Carol bans Bob: his open session ends at once.
                ban = w.space.write(w.carol, Ban(w.bob.did, "spam"))
                assert statuses(await c.submit(w.carol, w.space.id, ban)) == [("accepted", None)]
                reply = await bob.recv()
                assert reply == {
                    "type": "doc-unavailable",
                    "senderId": bob.server_peer_id,
                    "targetId": "bob",
                    "documentId": channel,
                }
                # His later writes are refused and not stored; reads too.
                after_ban = change(doc, w.actors["bob"], 2)
                reply = await push(bob, channel, doc, after_ban)
                assert reply["type"] == "doc-unavailable", reply
                assert (await request(bob, space_doc))["type"] == "doc-unavailable"
                held = await stored(srv, w.alice, channel)
                assert held.get_change(hash_of(doc, after_ban)) is None
                r = await srv.xrpc("GET", "export", w.bob.signer, params={"documentId": channel})
                assert r.status_code == 404

                # Carol still writes with her own actor.
                by_carol = change(doc, w.actors["carol"])
                assert (await push(carol, channel, doc, by_carol))["type"] == "sync"
                doc.apply(by_carol)
        heads = sorted(doc.heads)

    # The bindings survive a restart.
    async with running_server(tmp_path) as srv:
        c = SpacesClient(srv.url, srv.did)
        for p in (w.alice, w.bob, w.carol, w.mallory):
            p.token = ""
        async with RawPeer.connect(srv.ws(await c.token(w.bob)), "bob") as bob:
            assert (await request(bob, channel))["type"] == "doc-unavailable"
        async with RawPeer.connect(srv.ws(await c.token(w.mallory)), "mal") as mal:
            assert (await request(mal, channel))["type"] == "doc-unavailable"
        async with RawPeer.connect(srv.ws(await c.token(w.carol)), "carol") as carol:
            assert (await request(carol, channel))["type"] == "sync"
        assert sorted((await stored(srv, w.alice, channel)).heads) == heads
        assert (await bind(c, w.alice, channel, w.space.id))[0] == 200


async def test_binding_refusals_are_precise(tmp_path: Path) -> None:
    async with running_server(tmp_path) as srv:
        c = SpacesClient(srv.url, srv.did)
        w = await approval_space(c)
        other = Space(w.alice)
        assert statuses(await c.submit(w.alice, other.id, other.create)) == [("accepted", None)]
        alices, _ = await upload(srv, c, w.alice)
        mallorys, _ = await upload(srv, c, w.mallory)

        async def refused(who: Person, doc_id: str, space: str) -> tuple[int, str]:
            status, body = await bind(c, who, doc_id, space)
            return status, body["error"]

        # Someone else's document.
        assert await refused(w.bob, alices, w.space.id) == (403, "NotDocumentOwner")
        # A space the caller is not a member of.
        status, body = await bind(c, w.mallory, mallorys, w.space.id)
        assert (status, body["error"]) == (403, "NotMember")
        assert "not a member" in body["message"]
        assert await refused(w.alice, new_document_id(), w.space.id) == (404, "DocumentNotFound")
        assert await refused(w.alice, alices, "0" * 64) == (404, "SpaceNotFound")
        assert (await bind(c, w.alice, alices, w.space.id))[0] == 200
        # Already bound to another space.
        assert await refused(w.alice, alices, other.id) == (409, "AlreadyBound")
        r = await c.call(w.alice, "POST", "bindDocument", body={"documentId": alices})
        assert r.status_code == 400
        # A banned member may not bind.
        ban = w.space.write(w.alice, Ban(w.bob.did, "spam"))
        await c.submit(w.alice, w.space.id, ban)
        bobs, _ = await upload(srv, c, w.bob)
        status, body = await bind(c, w.bob, bobs, w.space.id)
        assert (status, body["error"]) == (403, "NotMember") and "banned" in body["message"]


async def test_open_space_non_members_read_only_kick_ends_session_joiner_woken(
    tmp_path: Path,
) -> None:
    async with running_server(tmp_path) as srv:
        c = SpacesClient(srv.url, srv.did)
        alice, bob, dave = Person("alice"), Person("bob"), Person("dave")
        s = Space(alice)  # open
        nonce = secrets.token_hex(8)
        bob_actor = actor_for(s.id, bob.did, nonce)
        ops = [s.create, s.write(bob, NO_INVITE), s.write(bob, BindActor(bob_actor, nonce))]
        assert all(st == "accepted" for st, _ in statuses(await c.submit(alice, s.id, *ops)))
        channel, doc = await upload(srv, c, alice)
        assert (await bind(c, alice, channel, s.id))[0] == 200

        # Dave, not a member, reads an open space but may not write to it.
        async with RawPeer.connect(srv.ws(await c.token(dave)), "dave") as peer:
            assert (await request(peer, channel))["type"] == "sync"
            dave_nonce = secrets.token_hex(8)
            reply = await push(peer, channel, doc, change(doc, secrets.token_bytes(16)))
            assert reply["type"] == "error" and channel in reply["message"]
            # Anonymous readers too.
            async with RawPeer.connect(srv.ws(), "anon") as anon:
                assert (await request(anon, channel))["type"] == "sync"
            # Dave joins and binds an actor: now his change is stored.
            dave_actor = actor_for(s.id, dave.did, dave_nonce)
            joined = [s.write(dave, NO_INVITE)]
            joined.append(s.write(dave, BindActor(dave_actor, dave_nonce)))
            await c.submit(dave, s.id, joined[0])
            await c.submit(dave, s.id, joined[1])
            by_dave = change(doc, bytes.fromhex(dave_actor))
            reply = await push(peer, channel, doc, by_dave)
            assert reply["type"] == "sync", reply
            assert (await stored(srv, alice, channel)).get_change(hash_of(doc, by_dave))

        # Bob's open session ends when Alice bans him (kicked, he would still read an
        # open space, as anyone not banned).
        async with RawPeer.connect(srv.ws(await c.token(bob)), "bob") as peer:
            assert (await request(peer, channel))["type"] == "sync"
            ban = s.write(alice, Ban(bob.did, "enough"))
            assert statuses(await c.submit(alice, s.id, ban)) == [("accepted", None)]
            reply = await peer.recv()
            assert reply["type"] == "doc-unavailable" and reply["documentId"] == channel


async def test_bindings_survive_kill_9(tmp_path: Path) -> None:
    async with server_process(tmp_path) as (proc, url):
        srv = await server_at(url)
        c = SpacesClient(srv.url, srv.did)
        w = await approval_space(c)
        channel, _ = await upload(srv, c, w.alice)
        assert (await bind(c, w.alice, channel, w.space.id))[0] == 200
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    async with server_process(tmp_path) as (_proc, url):
        srv = await server_at(url)
        c = SpacesClient(srv.url, srv.did)
        w.alice.token = ""
        # Bound: the owner's stored rules would let only Alice read; the space lets Bob.
        async with RawPeer.connect(srv.ws(await c.token(w.bob)), "bob") as peer:
            assert (await request(peer, channel))["type"] == "sync"
        async with RawPeer.connect(srv.ws(await c.token(w.mallory)), "mal") as peer:
            assert (await request(peer, channel))["type"] == "doc-unavailable"


async def test_a_kick_ends_the_members_sessions_in_an_approval_space(tmp_path: Path) -> None:
    async with running_server(tmp_path) as srv:
        c = SpacesClient(srv.url, srv.did)
        w = await approval_space(c)
        space_doc, _ = await upload(srv, c, w.alice)
        channel, _ = await upload(srv, c, w.alice)
        for d in (space_doc, channel):
            assert (await bind(c, w.alice, d, w.space.id))[0] == 200
        async with RawPeer.connect(srv.ws(await c.token(w.bob)), "bob") as peer:
            for d in (space_doc, channel):
                assert (await request(peer, d))["type"] == "sync"
            kick = w.space.write(w.carol, Kick(w.bob.did, "cool off"))
            assert statuses(await c.submit(w.carol, w.space.id, kick)) == [("accepted", None)]
            ended = {(m := await peer.recv())["documentId"] for _ in range(2)}
            assert m["type"] == "doc-unavailable" and ended == {space_doc, channel}
