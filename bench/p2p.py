"""Benchmark: Python peers over a WebRTC data channel versus over the router relay.

Runs a real router and two `peer.Peer`s in one process inside a fresh network
namespace (the script re-executes itself under `unshare -n`, as root; aiortc
needs non-loopback addresses, which a veth pair provides). Measures:

* time from `join` (the second peer's `listen`) to the first message arriving
  over the data channel, median of several joins;
* messages/s and MB/s from one peer to the other for the same workload over the
  channel and over the relay (`PeerConfig(webrtc=False)`), and their ratio;
* the same workload on a bare aiortc data channel (the anchor: what our
  sequencing, acks and envelope cost on top of aiortc).

The router's per-connection rate limits are raised for the relay run so it
measures relaying, not the limiter.

    .venv/bin/python bench/p2p.py [--joins 5] [--small 5000] [--large 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hearth.config import ServiceConfig, Settings  # noqa: E402
from hearth.identity import web_did_for_url  # noqa: E402
from hearth.jwt import Signer  # noqa: E402
from peer.link import PeerConfig, PeerLink  # noqa: E402
from peer.peer import Peer  # noqa: E402
from router.app import SERVICE, create_app  # noqa: E402
from router.client import RouterClient, did_key_auth  # noqa: E402
from tests.p2p.harness import add_veth, setup_loopback  # noqa: E402
from tests.servers import bound_socket, serve_app  # noqa: E402

DOC = "bench-p2p"
IN_NETNS = "HEARTH_BENCH_NETNS"
FAST_ROUTER = {
    "rate_frames": 1e9,
    "burst_frames": 1e9,
    "rate_bytes": 1e12,
    "burst_bytes": 1e12,
    "max_outgoing_bytes": 64 << 20,
}


@dataclass(frozen=True)
class RunningRouter:
    url: str
    did: str


@contextlib.asynccontextmanager
async def running_router(tmp: Path, **options: object) -> AsyncIterator[RunningRouter]:
    sock = bound_socket()
    settings = Settings(host="127.0.0.1", port=sock.getsockname()[1], data_dir=tmp)
    opts: dict[str, object] = {o.name: o.default for o in SERVICE.options}
    opts.update(options)
    config = ServiceConfig("router", settings, opts)
    app = create_app(config)
    async with serve_app(app, sock, **SERVICE.uvicorn_options(config)) as url:
        yield RunningRouter(url, web_did_for_url(settings.url))


class Receiver:
    def __init__(self) -> None:
        self.count = 0
        self.bytes = 0
        self.first_at = 0.0
        self.first_path = ""
        self.event = asyncio.Event()
        self.target = 0

    def __call__(self, link: PeerLink, _doc: str, data: bytes) -> None:
        if self.count == 0:
            self.first_at = time.perf_counter()
            self.first_path = link.path.value
        self.count += 1
        self.bytes += len(data)
        if self.count >= self.target:
            self.event.set()


async def pair(
    router: RunningRouter, config: PeerConfig
) -> tuple[list[RouterClient], Peer, Peer, Receiver]:
    clients = []
    peers = []
    for _ in range(2):
        client = RouterClient(router.url, did_key_auth(Signer.generate(), router.did))
        await client.start()
        clients.append(client)
        peers.append(Peer(client, config))
    receiver = Receiver()
    peers[1].on_message = receiver
    for p in peers:
        await p.start()
    return clients, peers[0], peers[1], receiver


async def close(clients: list[RouterClient], *peers: Peer) -> None:
    for p in peers:
        await p.close()
    for c in clients:
        await c.close()


async def join_to_first_message(router: RunningRouter) -> tuple[float, str]:
    config = PeerConfig(ice_servers=[], relay_delay=30.0)
    clients, a, b, receiver = await pair(router, config)
    receiver.target = 1
    await a.listen(DOC)
    t0 = time.perf_counter()
    await b.listen(DOC)
    link = await a.wait_link()
    a.send(link.conn_id, DOC, b"first")
    await asyncio.wait_for(receiver.event.wait(), 60)
    elapsed = receiver.first_at - t0
    path = receiver.first_path
    await close(clients, a, b)
    return elapsed, path


async def throughput(router: RunningRouter, webrtc: bool, count: int, size: int) -> dict[str, Any]:
    config = PeerConfig(ice_servers=[], webrtc=webrtc, relay_delay=30.0 if webrtc else 0.0)
    clients, a, b, receiver = await pair(router, config)
    await a.listen(DOC)
    await b.listen(DOC)
    link = await a.wait_link()
    if webrtc:
        await asyncio.wait_for(link.wait_channel(), 60)
    receiver.target = count
    payload = os.urandom(size)
    t0 = time.perf_counter()
    for _ in range(count):
        a.send(link.conn_id, DOC, payload)
        if not link.stream.window_open:
            await link.drained()
    await asyncio.wait_for(receiver.event.wait(), 600)
    elapsed = time.perf_counter() - t0
    path = link.path.value
    stats = link.stats()
    await close(clients, a, b)
    return {
        "path": path,
        "retransmitted": stats["retransmitted"],
        "seconds": elapsed,
        "msgs_per_s": count / elapsed,
        "mb_per_s": count * size / elapsed / 1e6,
    }


async def raw_aiortc(count: int, size: int) -> dict[str, Any]:
    """The anchor: one aiortc data channel, no Hearth layer, same workload and flow control."""
    from aiortc import RTCConfiguration, RTCPeerConnection

    a = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    b = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    dc = a.createDataChannel("bench")
    got = 0
    done = asyncio.Event()
    opened = asyncio.Event()
    low = asyncio.Event()

    def on_message(_data: bytes) -> None:
        nonlocal got
        got += 1
        if got == count:
            done.set()

    b.on("datachannel", lambda channel: channel.on("message", on_message))
    dc.on("open", opened.set)
    dc.bufferedAmountLowThreshold = 64 * 1024
    dc.on("bufferedamountlow", low.set)
    await a.setLocalDescription(await a.createOffer())
    await b.setRemoteDescription(a.localDescription)
    await b.setLocalDescription(await b.createAnswer())
    await a.setRemoteDescription(b.localDescription)
    await asyncio.wait_for(opened.wait(), 60)
    payload = os.urandom(size)
    t0 = time.perf_counter()
    for _ in range(count):
        dc.send(payload)
        if dc.bufferedAmount >= 256 * 1024:
            low.clear()
            await low.wait()
    await asyncio.wait_for(done.wait(), 600)
    elapsed = time.perf_counter() - t0
    await a.close()
    await b.close()
    return {
        "seconds": elapsed,
        "msgs_per_s": count / elapsed,
        "mb_per_s": count * size / elapsed / 1e6,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    setup_loopback()
    add_veth()
    with tempfile.TemporaryDirectory() as tmp:
        async with running_router(Path(tmp), **FAST_ROUTER) as router:
            joins = [await join_to_first_message(router) for _ in range(args.joins)]
            assert all(path == "channel" for _, path in joins), joins
            out: dict[str, Any] = {
                "join_to_first_channel_message_ms": {
                    "median": statistics.median(t for t, _ in joins) * 1000,
                    "all": [round(t * 1000, 1) for t, _ in joins],
                }
            }
            for name, count, size in (
                ("small", args.small, 1024),
                ("large", args.large, 64 * 1024),
            ):
                channel = await throughput(router, True, count, size)
                relay = await throughput(router, False, count, size)
                anchor = await raw_aiortc(count, size)
                assert channel["path"] == "channel" and relay["path"] == "relay"
                out[f"{name} ({count} x {size} B)"] = {
                    "channel": channel,
                    "relay": relay,
                    "aiortc": anchor,
                    "channel/relay msgs/s": channel["msgs_per_s"] / relay["msgs_per_s"],
                    "channel/aiortc msgs/s": channel["msgs_per_s"] / anchor["msgs_per_s"],
                }
            return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--joins", type=int, default=5)
    parser.add_argument("--small", type=int, default=5000, help="1 KiB messages")
    parser.add_argument("--large", type=int, default=200, help="64 KiB messages")
    args = parser.parse_args()
    if os.environ.get(IN_NETNS) != "1":
        env = {**os.environ, IN_NETNS: "1"}
        cmd = ["unshare", "-n", sys.executable, __file__, *sys.argv[1:]]
        raise SystemExit(subprocess.call(cmd, env=env))
    result = asyncio.run(run(args))
    print(json.dumps(result, indent=2))
    print()
    join_ms = result["join_to_first_channel_message_ms"]["median"]
    print(f"join -> first channel message: {join_ms:.0f} ms (median)")
    for key, value in result.items():
        if isinstance(value, dict) and "channel" in value:
            c, r, x = value["channel"], value["relay"], value["aiortc"]
            print(
                f"{key}: channel {c['msgs_per_s']:.0f} msg/s {c['mb_per_s']:.2f} MB/s; "
                f"relay {r['msgs_per_s']:.0f} msg/s {r['mb_per_s']:.2f} MB/s; "
                f"bare aiortc channel {x['msgs_per_s']:.0f} msg/s {x['mb_per_s']:.2f} MB/s; "
                f"channel/relay {value['channel/relay msgs/s']:.2f}x, "
                f"channel/bare aiortc {value['channel/aiortc msgs/s']:.2f}x"
            )


if __name__ == "__main__":
    main()
