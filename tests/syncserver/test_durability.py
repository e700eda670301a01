"""kill -9 the server (a real subprocess) mid-upload: every acknowledged change survives."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import httpx

from hearth.base58 import b58check_decode
from hearth.jwt import Signer, mint_service_jwt
from syncserver.automerge import Document
from tests.syncserver.helpers import TIMEOUT, NodeClients, server_process


async def token_and_did(url: str, signer: Signer) -> tuple[str, str]:
    async with httpx.AsyncClient() as http:
        did = (await http.get(url + "/.well-known/did.json")).json()["id"]
        jwt = mint_service_jwt(signer, iss=signer.did_key, aud=did, lxm="chat.hearth.v1.sync.token")
        r = await http.get(
            url + "/xrpc/chat.hearth.v1.sync.token", headers={"authorization": f"Bearer {jwt}"}
        )
        return r.json()["token"], did


async def test_kill_9_mid_upload_loses_nothing_acknowledged(tmp_path: Path) -> None:
    alice = Signer.generate()
    acked: list[list[str]] = []
    async with server_process(tmp_path) as (proc, url):
        token, _ = await token_and_did(url, alice)
        ws = "ws" + url[4:] + f"/?token={token}"
        async with NodeClients.start() as node:
            await node.call("open", client="a", url=ws)
            created = await node.call("create", client="a", changes=1)
            await node.call("waitSynced", client="a", url=created["url"])
            upload = asyncio.create_task(
                node.call("upload", client="a", url=created["url"], changes=3000)
            )
            # Let the server acknowledge a good number of rounds, then kill it mid-stream.
            while len(acked) < 40:
                event = await asyncio.wait_for(node.events.get(), TIMEOUT)
                if event.get("event") == "acked":
                    acked.append(event["heads"])
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            # Acknowledgements already in flight when it died count too.
            while not node.events.empty():
                event = node.events.get_nowait()
                if event.get("event") == "acked":
                    acked.append(event["heads"])
            upload.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await upload

    # Restart on the same data: no repair step, and everything acknowledged is there.
    async with server_process(tmp_path) as (_proc, url):
        token, _ = await token_and_did(url, alice)
        async with httpx.AsyncClient() as http:
            r = await http.get(
                url + "/xrpc/chat.hearth.v1.sync.export",
                params={"documentId": created["documentId"]},
                headers={"authorization": f"Bearer {token}"},
            )
        assert r.status_code == 200
        doc = Document.load(r.content)
        assert doc.missing_deps() == []
        for heads in acked:
            for head in heads:
                assert doc.has(b58check_decode(head)), f"acknowledged change {head} lost"
        # The upload was really interrupted mid-way.
        assert 40 <= len(doc) < 3001
