"""Per-document access, each rule checked both ways, with real automerge-repo clients."""

from __future__ import annotations

from hearth.base58 import b58check_encode
from hearth.jwt import Signer
from syncserver.automerge import Document
from tests.syncserver.helpers import NodeClients, RunningServer, metric, wait_for_metric


async def export_heads(server: RunningServer, document_id: str, signer: Signer) -> list[str]:
    r = await server.xrpc("GET", "export", signer, params={"documentId": document_id})
    assert r.status_code == 200, r.text
    return sorted(b58check_encode(h) for h in Document.load(r.content).heads)


async def export_changes(server: RunningServer, document_id: str, signer: Signer) -> set[str]:
    """The bs58check hashes of every change the server stores for the document."""
    r = await server.xrpc("GET", "export", signer, params={"documentId": document_id})
    assert r.status_code == 200, r.text
    return {b58check_encode(c.hash) for c in Document.load(r.content).changes()}


async def own_heads(node: NodeClients, client: str, url: str) -> set[str]:
    """The client's heads: right after a local change, that change's hash."""
    return set((await node.call("value", client=client, url=url))["heads"])


async def set_access(
    server: RunningServer, owner: Signer, document_id: str, **rules: object
) -> None:
    r = await server.xrpc("POST", "setAccess", owner, body={"documentId": document_id, **rules})
    assert r.status_code == 200, r.text


async def test_owner_readers_writers_public_anonymous(
    server: RunningServer, node: NodeClients
) -> None:
    alice, bob, carol = Signer.generate(), Signer.generate(), Signer.generate()
    await node.call("open", client="alice", url=server.ws(await server.token_for(alice)))
    await node.call("open", client="bob", url=server.ws(await server.token_for(bob)))
    await node.call("open", client="carol", url=server.ws(await server.token_for(carol)))
    await node.call("open", client="anon", url=server.ws())
    created = await node.call("create", client="alice", changes=3)
    url, doc_id = created["url"], created["documentId"]
    await node.call("waitSynced", client="alice", url=url)

    # The creator owns it, and by default nobody else may read it.
    r = await server.xrpc("GET", "getAccess", alice, params={"documentId": doc_id})
    assert r.json() == {
        "documentId": doc_id,
        "owner": alice.did_key,
        "public": False,
        "readers": [],
        "writers": [],
    }
    assert (await node.call("find", client="bob", url=url))["available"] is False
    assert (await node.call("find", client="anon", url=url))["available"] is False

    # Only the owner sets access.
    r = await server.xrpc(
        "POST", "setAccess", bob, body={"documentId": doc_id, "readers": [bob.did_key]}
    )
    assert r.status_code == 403
    r = await server.xrpc("GET", "getAccess", bob, params={"documentId": doc_id})
    assert r.status_code == 403

    # A reader reads but may not write.
    await set_access(server, alice, doc_id, readers=[bob.did_key], writers=[carol.did_key])
    await node.call("open", client="bob2", url=server.ws(await server.token_for(bob)))
    bob_view = await node.call("find", client="bob2", url=url)
    assert bob_view["available"] and len(bob_view["items"]) == 2
    stored = await export_changes(server, doc_id, alice)
    refused = await metric(server, "hearth_syncserver_refused_total", reason="not_writer")
    await node.call("change", client="bob2", url=url, changes=1, tag="bob")
    bob_change = await own_heads(node, "bob2", url)
    assert bob_change and not bob_change & stored
    await wait_for_metric(
        server, "hearth_syncserver_refused_total", refused + 1, reason="not_writer"
    )
    alice_heads = (await node.call("value", client="alice", url=url))["heads"]
    assert await export_heads(server, doc_id, alice) == sorted(alice_heads)
    # The refused change is not stored: the export holds exactly what it held.
    assert await export_changes(server, doc_id, alice) == stored

    # A writer writes, and the owner receives it.
    await node.call("open", client="carol2", url=server.ws(await server.token_for(carol)))
    assert (await node.call("find", client="carol2", url=url))["available"]
    await node.call("change", client="carol2", url=url, changes=2, tag="carol")
    got = await node.call("waitItems", client="alice", url=url, count=4)
    assert [i for i in got["items"] if i.startswith("carol")] == ["carol-0", "carol-1"]
    assert not any(i.startswith("bob") for i in got["items"])

    # Anonymous peers read public documents only, and never write.
    await set_access(server, alice, doc_id, public=True)
    await node.call("open", client="anon2", url=server.ws())
    anon_view = await node.call("find", client="anon2", url=url)
    assert anon_view["available"] and len(anon_view["items"]) == 4
    stored = await export_changes(server, doc_id, alice)
    refused = await metric(server, "hearth_syncserver_refused_total", reason="not_writer")
    await node.call("change", client="anon2", url=url, changes=1, tag="anon")
    anon_change = await own_heads(node, "anon2", url)
    await wait_for_metric(
        server, "hearth_syncserver_refused_total", refused + 1, reason="not_writer"
    )
    # public gives reading, not writing; and carol lost her rights with the new rules.
    await node.call("change", client="carol2", url=url, changes=1, tag="carol-late")
    carol_late = await own_heads(node, "carol2", url)
    await wait_for_metric(
        server, "hearth_syncserver_refused_total", refused + 2, reason="not_writer"
    )
    final = await export_heads(server, doc_id, alice)
    assert final == sorted((await node.call("value", client="alice", url=url))["heads"])
    # Neither refused change is stored, nor did it reach the owner.
    assert anon_change and carol_late and not (anon_change | carol_late) & stored
    assert await export_changes(server, doc_id, alice) == stored
    alice_items = (await node.call("value", client="alice", url=url))["items"]
    assert not any(i.startswith(("anon", "carol-late")) for i in alice_items)

    # Export follows the same rules: readers (here: anyone, it is public) only.
    r = await server.xrpc("GET", "export", params={"documentId": doc_id})
    assert r.status_code == 200
    await set_access(server, alice, doc_id, public=False)
    r = await server.xrpc("GET", "export", params={"documentId": doc_id})
    assert r.status_code == 404
    r = await server.xrpc("GET", "export", bob, params={"documentId": doc_id})
    assert r.status_code == 404


async def test_anonymous_peers_cannot_create(server: RunningServer, node: NodeClients) -> None:
    await node.call("open", client="anon", url=server.ws())
    created = await node.call("create", client="anon", changes=2)
    await wait_for_metric(server, "hearth_syncserver_refused_total", 1, reason="anonymous_create")
    r = await server.xrpc("GET", "export", params={"documentId": created["documentId"]})
    assert r.status_code == 404
    assert await metric(server, "hearth_syncserver_documents") == 0


async def test_a_peer_told_unavailable_gets_the_document_once_it_may_read(
    server: RunningServer, node: NodeClients
) -> None:
    alice, bob = Signer.generate(), Signer.generate()
    await node.call("open", client="alice", url=server.ws(await server.token_for(alice)))
    await node.call("open", client="bob", url=server.ws(await server.token_for(bob)))
    created = await node.call("create", client="alice", changes=4)
    await node.call("waitSynced", client="alice", url=created["url"])
    assert (await node.call("findOrWait", client="bob", url=created["url"]))["state"] == (
        "unavailable"
    )
    await set_access(server, alice, created["documentId"], readers=[bob.did_key])
    ready = await node.call("waitReady", client="bob", url=created["url"])
    assert len(ready["items"]) == 3
