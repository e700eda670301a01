"""Benchmark: resolveHandle requests/s and latency, cold (every lookup upstream) vs warm.

Runs the real resolver service (`hearth resolver`, a subprocess) against the
loopback DNS/HTTP fixtures of the test suite, and drives it over HTTP with
concurrent clients. "Cold" resolves N distinct handles, each needing a DNS and
an HTTPS lookup upstream — what a resolver without a cache does; "warm" asks
for the same handles again. Prints both and the warm/cold ratio.

    .venv/bin/python bench/resolver.py [--handles 2000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import free_port, percentile_ms  # noqa: E402
from tests.world import running_world  # noqa: E402


async def wait_ready(url: str) -> None:
    async with httpx.AsyncClient() as c:
        for _ in range(200):
            try:
                await c.get(url + "/xrpc/_health")
                return
            except httpx.TransportError:
                await asyncio.sleep(0.05)
    raise RuntimeError("resolver did not start")


async def _request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: str
) -> tuple[int, bytes]:
    writer.write(f"GET {target} HTTP/1.1\r\nhost: bench\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return status, await reader.readexactly(length)


async def run(url: str, handles: list[str], concurrency: int) -> tuple[float, list[float]]:
    """Keep-alive HTTP/1.1 over raw asyncio streams: a load generator far cheaper
    than an HTTP client library, so the server is what gets measured."""
    latencies: list[float] = []
    queue = list(reversed(handles))
    host, port = url.rsplit("/", 1)[1].split(":")

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while queue:
                handle = queue.pop()
                target = f"/xrpc/com.atproto.identity.resolveHandle?handle={handle}"
                start = time.perf_counter()
                status, body = await _request(reader, writer, target)
                latencies.append(time.perf_counter() - start)
                if status != 200:
                    raise RuntimeError(f"{handle}: {status} {body[:200]!r}")
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    return len(handles) / elapsed, latencies


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--handles", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    async with running_world() as world:
        handles = []
        for _ in range(args.handles):
            ident = world.new_plc_identity()
            assert ident.handle is not None
            world.publish_https(ident.handle, ident.did)
            handles.append(ident.handle)
        port = free_port()
        env = {**os.environ, **world.env, "HEARTH_LOG_LEVEL": "warning"}
        proc = await asyncio.create_subprocess_exec(
            *[
                sys.executable,
                "-m",
                "hearth",
                "resolver",
                "--port",
                str(port),
                "--data-dir",
                "/tmp/hearth-bench-resolver",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            await wait_ready(url)
            cold_rps, cold = await run(url, handles, args.concurrency)
            warm_rps, warm = await run(url, handles * 3, args.concurrency)
        finally:
            proc.terminate()
            await proc.wait()
    print(f"resolveHandle, {args.handles} handles, {args.concurrency} concurrent clients")
    print(
        f"  cold (upstream DNS+HTTPS each): {cold_rps:8.0f} req/s  "
        f"p50 {percentile_ms(cold, 0.5):6.2f} ms  p99 {percentile_ms(cold, 0.99):6.2f} ms"
    )
    print(
        f"  warm (cache hits):              {warm_rps:8.0f} req/s  "
        f"p50 {percentile_ms(warm, 0.5):6.2f} ms  p99 {percentile_ms(warm, 0.99):6.2f} ms"
    )
    print(
        f"  warm/cold throughput ratio: {warm_rps / cold_rps:.2f}x  "
        f"(median latency ratio {statistics.median(cold) / statistics.median(warm):.2f}x)"
    )


if __name__ == "__main__":
    asyncio.run(main())
