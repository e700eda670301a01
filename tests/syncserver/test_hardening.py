"""Inputs that must not pin the syncserver's memory: measured on a real server process."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx

from hearth.jwt import Signer
from syncserver.automerge import Have, SyncMessage
from syncserver.automerge.chunk import TYPE_DOCUMENT, wrap_chunk
from syncserver.automerge.leb128 import encode_uleb
from tests.syncserver.helpers import (
    TIMEOUT,
    RawPeer,
    rss_bytes,
    server_at,
    server_process,
)
from tests.syncserver.ids import new_document_id
from tests.syncserver.test_protocol import make_changes, sync_frame, sync_until_acked
from tests.timing import MS

MiB = 1024 * 1024


async def wait_for_health(url: str, key: str, value: int) -> None:
    """Poll /xrpc/_health until `key` equals `value` (the server's own count)."""
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    async with httpx.AsyncClient() as http:
        while (current := (await http.get(url + "/xrpc/_health")).json()[key]) != value:
            assert asyncio.get_running_loop().time() < deadline, f"{key} stayed at {current}"
            await asyncio.sleep(20 * MS)


async def test_document_chunks_are_refused_and_leave_nothing_behind(tmp_path: Path) -> None:
    count, size = 30, 8 * MiB
    async with server_process(tmp_path, "--memory-storage", "true") as (proc, url):
        server = await server_at(url)
        token = await server.token_for(Signer.generate())
        doc_id = new_document_id()
        doc = make_changes(2)
        async with RawPeer.connect(server.ws(token), "owner") as owner:
            await sync_until_acked(owner, doc_id, doc)
            before = rss_bytes(proc.pid)
            for _ in range(count):
                body = encode_uleb(0) + encode_uleb(1) + os.urandom(32) + os.urandom(size)
                message = SyncMessage(
                    heads=doc.heads, have=[Have()], changes=[wrap_chunk(TYPE_DOCUMENT, body)]
                )
                await owner.send_raw(sync_frame(owner, doc_id, message.encode()))
                reply = await owner.recv()
                assert reply["type"] == "error", reply
                assert "whole-document chunk" in reply["message"], reply
                assert reply["documentId"] == doc_id
        await wait_for_health(url, "peers", 0)
        grown = rss_bytes(proc.pid) - before
        # Without the refusal every chunk stayed in the cached document: 240 MiB.
        assert grown < count * size // 3, f"RSS grew by {grown // MiB} MiB"
