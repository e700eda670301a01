"""Real `@automerge/automerge-repo` clients (Node) against the syncserver."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hearth.jwt import Signer
from syncserver.automerge import Document
from tests.syncserver.helpers import TIMEOUT, NodeClients, RunningServer, running_server
from tests.syncserver.ids import new_document_id
from tests.timing import MS


async def test_thousands_of_changes_then_found_by_a_second_client(
    server: RunningServer, node: NodeClients
) -> None:
    token = await server.token_for(Signer.generate())
    await node.call("open", client="a", url=server.ws(token))
    created = await node.call("create", client="a", changes=3000, bulk=True)
    synced = await node.call("waitSynced", client="a", url=created["url"])
    await node.call("open", client="b", url=server.ws(token))
    found = await node.call("find", client="b", url=created["url"])
    assert found["available"]
    assert found["heads"] == synced["heads"]
    assert found["n"] == 2999
    # The server stored exactly that document: its export loads with the same heads.
    r = await server.xrpc(
        "GET", "export", bearer=token, params={"documentId": created["documentId"]}
    )
    assert r.status_code == 200
    doc = Document.load(r.content)
    assert len(doc) == 3000
    assert doc.missing_deps() == []


async def test_concurrent_editors_converge(server: RunningServer, node: NodeClients) -> None:
    alice, bob = Signer.generate(), Signer.generate()
    a_token = await server.token_for(alice)
    await node.call("open", client="a", url=server.ws(a_token))
    created = await node.call("create", client="a", changes=1)
    url = created["url"]
    await node.call("waitSynced", client="a", url=url)
    r = await server.xrpc(
        "POST",
        "setAccess",
        alice,
        body={"documentId": created["documentId"], "writers": [bob.did_key]},
    )
    assert r.status_code == 200, r.text
    await node.call("open", client="b", url=server.ws(await server.token_for(bob)))
    assert (await node.call("find", client="b", url=url))["available"]
    # Both edit at once, in several bursts, while the other's changes flow in.
    for burst in range(5):
        await asyncio.gather(
            node.call("change", client="a", url=url, changes=40, tag=f"a{burst}"),
            node.call("change", client="b", url=url, changes=40, tag=f"b{burst}"),
        )
    a = await node.call("waitItems", client="a", url=url, count=400)
    b = await node.call("waitItems", client="b", url=url, count=400)
    assert sorted(a["heads"]) == sorted(b["heads"])
    assert a["items"] == b["items"]
    assert {i.split("-")[0] for i in a["items"]} == {f"{w}{n}" for w in "ab" for n in range(5)}


async def test_find_a_document_whose_author_went_offline(
    server: RunningServer, node: NodeClients
) -> None:
    alice = Signer.generate()
    token = await server.token_for(alice)
    await node.call("open", client="a", url=server.ws(token))
    created = await node.call("create", client="a", changes=50)
    await node.call("waitSynced", client="a", url=created["url"])
    await node.call("close", client="a")
    await node.call("open", client="a2", url=server.ws(token))
    found = await node.call("find", client="a2", url=created["url"])
    assert found["available"] and len(found["items"]) == 49


async def test_unknown_document_is_unavailable(server: RunningServer, node: NodeClients) -> None:
    await node.call("open", client="a", url=server.ws(await server.token_for(Signer.generate())))
    found = await node.call("find", client="a", url=f"automerge:{new_document_id()}")
    assert found == {"id": found["id"], "ok": True, "available": False}


async def test_documents_survive_restart(tmp_path: Path, node: NodeClients) -> None:
    alice = Signer.generate()
    async with running_server(tmp_path) as first:
        token = await first.token_for(alice)
        await node.call("open", client="a", url=first.ws(token))
        created = await node.call("create", client="a", changes=200)
        synced = await node.call("waitSynced", client="a", url=created["url"])
        storage_id = (await node.call("open", client="probe", url=first.ws()))["serverStorageId"]
        await node.call("close", client="a")
        await node.call("close", client="probe")
    async with running_server(tmp_path) as second:
        # Tokens and the storageId survive too.
        opened = await node.call("open", client="b", url=second.ws(token))
        assert opened["serverStorageId"] == storage_id
        found = await node.call("find", client="b", url=created["url"])
        assert found["available"]
        assert found["heads"] == synced["heads"]
        assert len(found["items"]) == 199


async def test_ephemeral_messages_arrive_once_per_other_peer(
    server: RunningServer, node: NodeClients
) -> None:
    alice = Signer.generate()
    token = await server.token_for(alice)
    await node.call("open", client="a", url=server.ws(token))
    created = await node.call("create", client="a", changes=1)
    url = created["url"]
    await node.call("waitSynced", client="a", url=url)
    for name in ("b", "c"):
        await node.call("open", client=name, url=server.ws(token))
        assert (await node.call("find", client=name, url=url))["available"]
    await node.call("broadcast", client="a", url=url, message={"n": 1})
    await node.call("broadcast", client="a", url=url, message={"n": 2})
    # Wait until the second message reached both; per-connection order means
    # every copy of the first one has arrived by then too.
    for name in ("b", "c"):
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while True:
            got = (await node.call("ephemeral", client=name, url=url))["received"]
            if any(m["message"] == {"n": 2} for m in got):
                break
            assert asyncio.get_running_loop().time() < deadline, got
            await asyncio.sleep(10 * MS)
        assert [m["message"] for m in got] == [{"n": 1}, {"n": 2}]
    assert (await node.call("ephemeral", client="a", url=url))["received"] == []
