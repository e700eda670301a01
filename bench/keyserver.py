"""Benchmark: keyserver public-key lookups over HTTP — lookups/s and p99, warm.

Runs the real keyserver (`hearth keyserver`, a subprocess, SQLite under a temp
dir) against the loopback DNS/HTTP/PLC fixtures of the test suite. N did:plc
identities get their keys on first lookup (resolve + generate + seal + a
durable insert each: "create"), then the same DIDs are looked up again, in
random order, by concurrent keep-alive clients ("warm": answers come from the
keyserver's in-memory cache after one pass). The anchor is the floor of the same stack: a bare
Starlette/uvicorn endpoint answering a constant body of the same size, in its
own process, driven by the same client, in rounds alternating with the warm
runs so that load from elsewhere hits both alike. Prints all three and
warm/anchor.

    .venv/bin/python bench/keyserver.py [--dids 2000] [--concurrency 32] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import free_port  # noqa: E402
from tests.world import running_world  # noqa: E402

PATH = "/xrpc/chat.hearth.v1.key.public?did="


async def wait_ready(url: str) -> None:
    async with httpx.AsyncClient() as c:
        for _ in range(400):
            try:
                await c.get(url + "/xrpc/_health")
                return
            except httpx.TransportError:
                await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not start")


class Connection:
    """A minimal HTTP/1.1 keep-alive client, so the client costs little next to the server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def get(self, target: str) -> tuple[int, bytes]:
        self.writer.write(f"GET {target} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


async def drive(port: int, targets: list[str], concurrency: int) -> tuple[float, list[float]]:
    """Send every target once over `concurrency` connections; (requests/s, latencies)."""
    conns = [await Connection.open(port) for _ in range(concurrency)]
    latencies: list[float] = []
    queue = list(reversed(targets))

    async def worker(conn: Connection) -> None:
        while queue:
            target = queue.pop()
            start = time.perf_counter()
            status, body = await conn.get(target)
            latencies.append(time.perf_counter() - start)
            if status != 200:
                raise RuntimeError(f"{target}: {status} {body[:200]!r}")

    start = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = time.perf_counter() - start
    for c in conns:
        c.close()
    return len(targets) / elapsed, latencies


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000


def line(name: str, rps: float, lat: list[float]) -> str:
    return (
        f"  {name:<36} {rps:8.0f} req/s  p50 {pct(lat, 0.5):6.2f} ms  p99 {pct(lat, 0.99):6.2f} ms"
    )


def serve_anchor(port: int, body: bytes) -> None:
    """The anchor process: a constant JSON answer on the same server stack."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def public(_request: Request) -> Response:
        return Response(body, media_type="application/json")

    app = Starlette(routes=[Route("/xrpc/chat.hearth.v1.key.public", public)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


async def start(argv: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(*argv, env=env, stdout=subprocess.DEVNULL)


async def main(args: argparse.Namespace) -> None:
    async with running_world() as world:
        dids = [world.new_plc_identity().did for _ in range(args.dids)]
        port = free_port()
        data = tempfile.mkdtemp(prefix="hearth-bench-keyserver-")
        env = {
            **os.environ,
            **world.env,
            "HEARTH_LOG_LEVEL": "warning",
            "HEARTH_KEYSERVER_CREATE_BURST": str(args.dids * 2),
        }
        procs = [
            await start(
                [sys.executable, "-m", "hearth", "keyserver", "--port", str(port)]
                + ["--data-dir", data],
                env,
            )
        ]
        try:
            await wait_ready(f"http://127.0.0.1:{port}")
            targets = [PATH + d for d in dids]
            create_rps, create = await drive(port, targets, args.concurrency)
            await drive(port, targets, args.concurrency)  # warm-up: every answer cached
            conn = await Connection.open(port)
            _, body = await conn.get(targets[0])
            conn.close()
            json.loads(body)

            anchor_port = free_port()
            anchor_argv = [sys.executable, __file__, "--anchor", str(anchor_port)]
            procs.append(await start(anchor_argv + ["--anchor-body", body.decode()], env))
            await wait_ready(f"http://127.0.0.1:{anchor_port}")
            await drive(anchor_port, targets, args.concurrency)

            # Alternate short runs of both, so load from elsewhere hits both alike.
            warm_rps: list[float] = []
            anchor_rps: list[float] = []
            warm: list[float] = []
            anchor: list[float] = []
            for _ in range(args.rounds):
                random.shuffle(targets)
                rps, lat = await drive(port, targets, args.concurrency)
                warm_rps.append(rps)
                warm += lat
                rps, lat = await drive(anchor_port, targets, args.concurrency)
                anchor_rps.append(rps)
                anchor += lat
        finally:
            for p in procs:
                p.terminate()
                await p.wait()

    print(
        f"key.public, {args.dids} did:plc DIDs, {args.concurrency} concurrent keep-alive clients, "
        f"{len(body)}-byte answers; warm and anchor alternate over {args.rounds} rounds "
        "(median round throughput, p99 over all rounds)"
    )
    w, a = statistics.median(warm_rps), statistics.median(anchor_rps)
    print(line("create (resolve, generate, seal, fsync)", create_rps, create))
    print(line("warm (cached public answers)", w, warm))
    print(line("anchor (constant body, same stack)", a, anchor))
    p99_ratio = pct(warm, 0.99) / pct(anchor, 0.99)
    print(f"  warm/anchor throughput: {w / a:.2f}  p99 ratio: {p99_ratio:.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--dids", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5, help="alternating warm/anchor rounds")
    parser.add_argument("--anchor", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--anchor-body", help=argparse.SUPPRESS)
    cli = parser.parse_args()
    if cli.anchor:
        serve_anchor(cli.anchor, cli.anchor_body.encode())
    else:
        asyncio.run(main(cli))
