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


async def test_router_without_signal_means_relay_only(tmp_path: Path) -> None:
    # A router that does not serve `signal` (a Roomy v0 router answers unknown_verb):
    # the peers stop trying WebRTC and the held data goes by relay at once.
    from router.signaling import IceServersRequest, Signal

    router, task = await start_router(tmp_path)
    handlers = router.state.router._handlers
    handlers.pop(Signal)
    handlers.pop(IceServersRequest)
    got: list[bytes] = []
    done = asyncio.Event()

    def on_message(_link: PeerLink, _doc: str, data: bytes) -> None:
        got.append(data)
        done.set()

    config = PeerConfig(relay_delay=WAIT * 10)  # would hold data for a channel "forever"
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
        offerer = await asyncio.wait_for(asyncio.gather(*(p.wait_link() for p in peers)), WAIT)
        a_link = next(link for link in offerer if link.offerer)
        sender = next(p for p in peers if p.links.get(a_link.conn_id) is a_link)
        sender.send(a_link.conn_id, "d", b"hello")
        await asyncio.wait_for(done.wait(), WAIT)
        assert got == [b"hello"]
        codes = {(e.code, e.verb) for p in peers for e in p.errors}
        assert ("unknown_verb", "signal") in codes
        assert all(not p.config.webrtc for p in peers if p.errors)
        assert a_link.path == "relay"
    finally:
        for peer in peers:
            await peer.close()
        for client in clients:
            await client.close()
        await stop_router(router, task)


async def test_peers_relink_after_a_router_restart(tmp_path: Path) -> None:
    # The router restarts on the same port: both clients reconnect by themselves,
    # every old link is closed, and new links (new connIds) carry messages.
    router, task = await start_router(tmp_path / "1")
    got: list[bytes] = []
    done = asyncio.Event()

    def on_message(_link: PeerLink, _doc: str, data: bytes) -> None:
        got.append(data)
        done.set()

    config = PeerConfig(webrtc=False, rto=200 * MS)
    clients = [
        RouterClient(
            router.url,
            did_key_auth(Signer.generate(), router.did),
            backoff_min=0.005,
            backoff_max=0.05,
        )
        for _ in range(2)
    ]
    peers = [Peer(c, config, on_message=on_message) for c in clients]
    try:
        for client, peer in zip(clients, peers, strict=True):
            await client.start()
            await peer.start()
            await peer.listen("d")
        a, b = peers
        old = await asyncio.wait_for(a.wait_link(), WAIT)
        await stop_router(router, task)
        router, task = await start_router(tmp_path / "2", port=router.port)
        new = await asyncio.wait_for(a.wait_link(lambda link: link is not old), WAIT)
        assert old.closed and new.conn_id == b.conn_id != old.conn_id
        assert a.send(new.conn_id, "d", b"after the restart")
        await asyncio.wait_for(done.wait(), WAIT)
        assert got == [b"after the restart"]
    finally:
        for peer in peers:
            await peer.close()
        for client in clients:
            await client.close()
        await stop_router(router, task)
