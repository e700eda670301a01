"""PeerLink and Peer limits in-process (relay only, no WebRTC, no namespaces)."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest

from hearth.jwt import Signer
from hearth.types import ConnId, Did, DocumentId
from peer.link import MAX_SIGNALS_QUEUED, PeerConfig, PeerLink
from peer.messages import Restart
from peer.peer import Peer, WindowFull
from peer.sync import DocumentSync
from peer.transport import SequencedStream
from router.client import RouterClient, did_key_auth
from syncserver.automerge import Document
from tests.router.conftest import start_router, stop_router
from tests.timing import MS

WAIT = 10_000 * MS
A = (Did("did:key:za"), ConnId("01A"))
B = (Did("did:key:zb"), ConnId("01B"))


def relay_link(failures: list[str], **config: object) -> PeerLink:
    async def nowhere(*_args: object) -> None:
        return None

    async def no_ice() -> list[dict[str, object]]:
        return []

    return PeerLink(
        local=A,
        remote=B,
        doc=DocumentId("d"),
        config=PeerConfig(webrtc=False, **config),  # type: ignore[arg-type]
        send_signal=nowhere,
        send_relay=nowhere,
        ice_source=no_ice,
        deliver=lambda _link, _message: None,
        on_fail=lambda _link, reason: failures.append(reason),
    )


async def test_an_oversize_message_from_the_other_side_fails_the_link() -> None:
    failures: list[str] = []
    link = relay_link(failures, max_message=1000)
    try:
        other = SequencedStream(max_fragment=300, max_message=10_000)
        packets = other.send(b"x" * 1200, 0.0)
        for p in packets:
            link.receive(p, "relay")  # type: ignore[arg-type]
        assert len(failures) == 1 and "max_message" in failures[0]
        assert link.failure == failures[0] and link.stats()["failure"] == failures[0]
        assert link.stream.buffered_bytes == 0
        # what follows from that connection is ignored; nothing more is sent to it
        before = link.counters.received_packets["relay"]
        link.receive(other.send(b"y", 0.0)[0], "relay")  # type: ignore[arg-type]
        assert link.counters.received_packets["relay"] == before
    finally:
        await link.close()


async def test_acks_waiting_for_a_stalled_path_do_not_pile_up() -> None:
    link = relay_link([])  # not started: nothing takes packets out of the outbox
    try:
        other = SequencedStream()
        for i in range(100):
            link.receive(other.send(b"%d" % i, 0.0)[0], "relay")  # type: ignore[arg-type]
            link._flush_ack()  # what the ACK_DELAY timer runs
        assert list(link._outbox) == [other_ack(100)]
    finally:
        await link.close()


def other_ack(upto: int) -> bytes:
    return bytes([2]) + upto.to_bytes(8, "big")


async def test_signals_waiting_are_bounded() -> None:
    link = relay_link([])  # not started: nothing takes signals off the queue
    try:
        for i in range(MAX_SIGNALS_QUEUED + 36):
            link.signal(Restart(i))
        assert link._signals.qsize() == MAX_SIGNALS_QUEUED
        assert link.stats()["signalsDropped"] == 36
    finally:
        await link.close()


async def test_close_wakes_senders_waiting_for_the_window() -> None:
    link = relay_link([], window=100)
    link.send(b"x" * 100)
    assert not link.window_open
    with pytest.raises(WindowFull):
        link.send(b"y")
    waiter = asyncio.create_task(link.drained())
    await asyncio.sleep(0)
    assert not waiter.done()
    await link.close()
    await asyncio.wait_for(waiter, WAIT)
    assert link.window_open


async def test_send_wait_waits_for_acks(tmp_path: Path) -> None:
    # A's peer sends to B, whose events are not handled yet: no acks, the window
    # fills, `send` refuses and `send_wait` waits; once B runs everything arrives.
    router, task = await start_router(tmp_path)
    got: list[bytes] = []
    done = asyncio.Event()
    n = 40

    def on_message(_link: PeerLink, _doc: str, data: bytes) -> None:
        got.append(data)
        if len(got) == n:
            done.set()

    config = PeerConfig(webrtc=False, window=1000, rto=200 * MS)
    ca = RouterClient(router.url, did_key_auth(Signer.generate(), router.did))
    cb = RouterClient(router.url, did_key_auth(Signer.generate(), router.did))
    a = Peer(ca, config)
    b = Peer(cb, config, on_message=on_message)
    try:
        await ca.start()
        await cb.start()
        await a.start()
        await a.listen("d")
        await cb.listen("d")  # B joins, but its Peer is not running yet
        link = await asyncio.wait_for(a.wait_link(), WAIT)
        sent = 0
        while link.window_open:
            assert await a.send_wait(link.conn_id, "d", b"%03d" % sent + b"." * 97)
            sent += 1
        assert sent == 10  # 10 x ~100 bytes reach the 1000-byte window
        with pytest.raises(WindowFull):
            a.send(link.conn_id, "d", b"refused")
        blocked = asyncio.create_task(a.send_wait(link.conn_id, "d", b"%03d" % sent + b"." * 97))
        await asyncio.sleep(0)
        assert not blocked.done()
        await b.start()  # B handles its queued join and relayed packets, and acks
        assert await asyncio.wait_for(blocked, WAIT)
        sent += 1
        for i in range(sent, n):
            assert await asyncio.wait_for(
                a.send_wait(link.conn_id, "d", b"%03d" % i + b"." * 97), WAIT
            )
        await asyncio.wait_for(done.wait(), WAIT)
        assert [m[:3] for m in got] == [b"%03d" % i for i in range(n)]
        assert link.stream.unacked_bytes <= 1000 + 102
    finally:
        await a.close()
        await b.close()
        await ca.close()
        await cb.close()
        await stop_router(router, task)


def load_changes(path: str) -> list[bytes]:
    return [base64.b64decode(c) for c in json.loads(Path(path).read_text())]


async def test_document_sync_holds_pushes_while_the_window_is_full(
    tmp_path: Path, changes_file: str
) -> None:
    # A 1,000-change document over a 4 KiB window: sync messages are generated
    # only when the link has room, and the documents still converge.
    changes = load_changes(changes_file)
    router, task = await start_router(tmp_path)
    config = PeerConfig(webrtc=False, window=4096, rto=500 * MS)
    clients = [RouterClient(router.url, did_key_auth(Signer.generate(), router.did)) for _ in "ab"]
    peers = [Peer(c, config) for c in clients]
    syncs = [DocumentSync(p) for p in peers]
    try:
        syncs[0].add("d", Document.from_chunks(changes[:500]))
        syncs[1].add("d", Document())
        for client, peer in zip(clients, peers, strict=True):
            await client.start()
            await peer.start()
            await peer.listen("d")
        await asyncio.wait_for(peers[0].wait_link(), WAIT)
        # the other half arrives as local changes, one at a time, while syncing
        for chunk in changes[500:]:
            syncs[0].apply_local("d", chunk)
        heads = syncs[0].docs["d"].heads
        await asyncio.wait_for(syncs[1].wait_heads("d", heads), 60_000 * MS)
        assert len(syncs[1].docs["d"]) == 1000
        assert syncs[0].pushes_held > 0
    finally:
        for peer in peers:
            await peer.close()
        for client in clients:
            await client.close()
        await stop_router(router, task)
