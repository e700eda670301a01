"""Relay-only peers (no WebRTC) in-process: the router drops frames, the stream recovers."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hearth.jwt import Signer
from peer.link import PeerConfig, PeerLink
from peer.peer import Peer
from router.client import RouterClient, did_key_auth
from tests.router.conftest import start_router, stop_router
from tests.timing import MS

WAIT = 60_000 * MS


async def test_frames_dropped_by_the_router_are_resent_in_order(tmp_path: Path) -> None:
    # A tight frame bucket makes the router refuse many relayed frames
    # (`error rate_limited`); the stream's retransmission timer sends them again.
    router, task = await start_router(
        tmp_path, rate_frames=400.0, burst_frames=40.0, max_errors=1e9, error_rate=1e9
    )
    got: list[int] = []
    done = asyncio.Event()
    n = 400

    def on_message(_link: PeerLink, doc: str, data: bytes) -> None:
        assert doc == "d"
        got.append(int(data))
        if len(got) >= n:
            done.set()

    config = PeerConfig(webrtc=False, rto=200 * MS)
    clients = [
        RouterClient(router.url, did_key_auth(Signer.generate(), router.did)) for _ in range(2)
    ]
    peers: list[Peer] = []
    try:
        for client in clients:
            await client.start()
            peer = Peer(client, config, on_message=on_message)
            await peer.start()
            await peer.listen("d")
            peers.append(peer)
        a, b = peers
        link = await asyncio.wait_for(a.wait_link(), WAIT)
        for i in range(n):
            a.send(link.conn_id, "d", b"%d" % i)
        await asyncio.wait_for(done.wait(), WAIT)
        assert got == list(range(n))
        assert link.path == "relay"
        stats = link.stats()
        assert stats["retransmitted"] > 0
        assert stats["sentBytes"]["channel"] == 0
        assert any(e.code == "rate_limited" for e in a.errors)
    finally:
        for peer in peers:
            await peer.close()
        for client in clients:
            await client.close()
        await stop_router(router, task)
