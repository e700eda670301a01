"""Inputs that must not pin the syncserver's memory: measured on a real server process."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from pathlib import Path

import cbor2
import httpx

from hearth.jwt import Signer
from syncserver.automerge import Document, Have, SyncMessage, SyncState
from syncserver.automerge.chunk import TYPE_DOCUMENT, encode_change, wrap_chunk
from syncserver.automerge.leb128 import encode_uleb
from tests.syncserver.helpers import (
    TIMEOUT,
    RawPeer,
    RunningServer,
    metric,
    rss_bytes,
    server_at,
    server_process,
    wait_for_metric,
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


class DeafReader:
    """A WebSocket client that joins, asks for a document, and reads only when told.

    Raw asyncio streams with a small receive buffer: a client library would read
    the socket in the background and so drain the server's buffers for us.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def ask(cls, url: str, peer_id: str, doc_id: str) -> DeafReader:
        host, port = url.removeprefix("http://").split(":")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        reader, writer = await asyncio.open_connection(sock=sock)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert head.startswith(b"HTTP/1.1 101"), head
        self = cls(reader, writer)
        self.send(
            {
                "type": "join",
                "senderId": peer_id,
                "peerMetadata": {"isEphemeral": True},
                "supportedProtocolVersions": ["1"],
            }
        )
        request = Document().generate_sync_message(SyncState())
        assert request is not None
        self.send(
            {
                "type": "request",
                "senderId": peer_id,
                "targetId": "server",
                "documentId": doc_id,
                "data": request,
            }
        )
        await writer.drain()
        return self

    async def frame(self) -> tuple[int, bytes]:
        """The next frame from the server: (opcode, payload)."""
        head = await asyncio.wait_for(self.reader.readexactly(2), TIMEOUT)
        length = head[1] & 0x7F
        if length == 126:
            length = int.from_bytes(await self.reader.readexactly(2), "big")
        elif length == 127:
            length = int.from_bytes(await self.reader.readexactly(8), "big")
        return head[0] & 0x0F, await asyncio.wait_for(self.reader.readexactly(length), TIMEOUT)

    def send(self, obj: object) -> None:
        payload = cbor2.dumps(obj)
        assert len(payload) < 126
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(bytes([0x82, 0x80 | len(payload)]) + mask + masked)

    def close(self) -> None:
        self.writer.transport.abort()


async def health(url: str) -> dict[str, int]:
    async with httpx.AsyncClient() as http:
        value: dict[str, int] = (await http.get(url + "/xrpc/_health")).json()
    return value


def big_document() -> Document:
    """16 MiB: 64 changes of 256 KiB."""
    doc = Document()
    actor = os.urandom(16)
    for seq in range(1, 65):
        doc.apply(
            encode_change(
                deps=doc.heads,
                actor=actor,
                seq=seq,
                start_op=seq,
                columns=b"\x00" + os.urandom(256 * 1024),
            )
        )
    return doc


async def upload_public(server: RunningServer, owner: Signer, doc: Document) -> str:
    token = await server.token_for(owner)
    doc_id = new_document_id()
    async with RawPeer.connect(server.ws(token), "owner") as peer:
        await sync_until_acked(peer, doc_id, doc)
    r = await server.xrpc("POST", "setAccess", owner, body={"documentId": doc_id, "public": True})
    assert r.status_code == 200, r.text
    return doc_id


async def test_readers_that_never_read_are_shed_slowest_first(tmp_path: Path) -> None:
    total = 64 * MiB
    async with server_process(
        tmp_path, "--memory-storage", "true", "--send-total-bytes", str(total)
    ) as (proc, url):
        server = await server_at(url)
        doc_id = await upload_public(server, Signer.generate(), big_document())
        rounds = await metric(server, "hearth_syncserver_sync_rounds_total")
        before = rss_bytes(proc.pid)
        readers = []
        try:
            for i in range(20):
                readers.append(await DeafReader.ask(url, f"deaf-{i}", doc_id))
            # Every request answered (or its reader shed) before we look.
            await wait_for_metric(server, "hearth_syncserver_sync_rounds_total", rounds + 20)
            await wait_for_metric(
                server, "hearth_syncserver_refused_total", 1, reason="server_busy"
            )
            held = (await health(url))["outgoingBytes"]
            grown = rss_bytes(proc.pid) - before
            assert held <= total, held
            # Unbounded, the 20 readers took ~600 MiB. Bounded: the budget, plus the
            # transient copies of a 16 MiB reply (sync message, CBOR frame, WebSocket
            # frame, transport buffer) and what the allocator keeps of them: 145 to
            # 272 MiB in all measured on a busy machine. The bound sits between that and
            # the unbounded ~600 MiB, so allocator noise under load does not fail it.
            assert grown < 5 * total + 40 * MiB, f"RSS grew by {grown // MiB} MiB"
        finally:
            for reader in readers:
                reader.close()
        await wait_for_health(url, "peers", 0)
        assert (await health(url))["outgoingBytes"] == 0


async def test_a_reader_of_a_document_bigger_than_its_bound_gets_it_and_what_follows(
    tmp_path: Path,
) -> None:
    async with server_process(
        tmp_path, "--memory-storage", "true", "--send-queue-bytes", str(MiB)
    ) as (_proc, url):
        server = await server_at(url)
        owner = Signer.generate()
        doc = big_document()
        doc_id = await upload_public(server, owner, doc)
        reader = await DeafReader.ask(url, "slow", doc_id)
        try:
            # The 16 MiB reply sits in the server's buffers while the reader waits...
            deadline = asyncio.get_running_loop().time() + TIMEOUT
            while (await health(url))["outgoingBytes"] < 2 * MiB:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(20 * MS)
            # ... and small messages for it come in behind: they are queued, not a
            # reason to close it (one message beyond the bound is always allowed).
            token = await server.token_for(owner)
            async with RawPeer.connect(server.ws(token), "talker") as talker:
                await sync_until_acked(talker, doc_id, Document.load(doc.save()))
                for count in range(1, 4):
                    await talker.send_raw(
                        {
                            "type": "ephemeral",
                            "senderId": "talker",
                            "targetId": talker.server_peer_id,
                            "documentId": doc_id,
                            "sessionId": "s",
                            "count": count,
                            "data": b"x" * 1000,
                        }
                    )
                await wait_for_metric(
                    server, "hearth_syncserver_messages_in_total", 3, type="EphemeralMessage"
                )
                seen = []
                while len(seen) < 3:
                    opcode, payload = await reader.frame()
                    assert opcode == 2, (opcode, payload[2:])
                    message = cbor2.loads(payload)
                    if message["type"] == "sync":
                        got = Document()
                        got.receive_sync_message(SyncState(), message["data"])
                        assert got.heads == doc.heads
                    elif message["type"] == "ephemeral":
                        seen.append(message["count"])
                assert seen == [1, 2, 3]
        finally:
            reader.close()
