"""Unfinished messages: one budget for the whole router, and a time limit.

A client can hold up to `max_frame_bytes` of an unfinished frame per
connection; with many connections that used to grow the router without bound
(300 connections holding ~1 MiB each: 68 -> 367 MB). The bookkeeping is tested
without sockets, then over real sockets, then with RSS read from /proc of a
real `hearth router` process.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import sys
from pathlib import Path

from hearth.identity import web_did_for_url
from hearth.jwt import Signer
from router.limits import Limits
from router.server import RouterServer
from router.websocket import encode_frame_header
from tests.router.conftest import (
    MS,
    TIMEOUT,
    connect_token,
    start_router,
    stop_router,
)
from tests.router.test_server import until

MiB = 1 << 20


class FakeProto:
    """What `RouterServer` sees of a connection holding an unfinished message."""

    def __init__(self, server: RouterServer, name: str) -> None:
        self.server = server
        self.did = name
        self.partial = 0
        self.closed: tuple[int, str] | None = None

    def close(self, code: int, _reason: str, why: str) -> None:
        self.closed = (code, why)
        self.release_partial()

    def release_partial(self) -> None:
        if self.partial:
            self.server.hold_partial(self, 0, False, 0.0)  # type: ignore[arg-type]

    def hold(self, held: int, now: float, progressed: bool = False) -> None:
        self.server.hold_partial(self, held, progressed, now)  # type: ignore[arg-type]


def test_budget_closes_the_oldest_unfinished_message_first() -> None:
    server = RouterServer("did:web:r", Limits(max_partial_bytes=10_000, partial_timeout=5.0))
    a, b, c = (FakeProto(server, n) for n in "abc")
    a.hold(4000, now=1.0)
    b.hold(4000, now=2.0)
    a.hold(4500, now=3.0)  # growing does not make a's message younger
    assert server.partial_bytes == 8500 and a.closed is None
    c.hold(3000, now=4.0)  # over the budget: a, the oldest, goes
    assert a.closed == (1013, "partial_budget") and b.closed is None and c.closed is None
    assert server.partial_bytes == 7000 and server.partial_count == 2
    b.hold(100, now=5.0, progressed=True)  # b finished a message and began another
    c.hold(9950, now=6.0)  # now c's message is the oldest: it closes itself
    assert c.closed == (1013, "partial_budget") and b.closed is None
    assert server.partial_bytes == 100
    b.hold(0, now=7.0)
    assert server.partial_bytes == 0 and server.partial_count == 0


def test_unfinished_messages_time_out_from_their_first_byte() -> None:
    server = RouterServer("did:web:r", Limits(partial_timeout=10.0))
    a, b, c = (FakeProto(server, n) for n in "abc")
    a.hold(10, now=0.0)
    b.hold(10, now=1.0)
    c.hold(10, now=2.0)
    a.hold(5000, now=9.0)  # more bytes of the same message: its clock keeps running
    b.hold(20, now=9.0, progressed=True)  # a new message: its clock starts over
    server.expire_partials(10.5)
    assert a.closed == (1008, "partial_timeout") and b.closed is None and c.closed is None
    server.expire_partials(12.5)
    assert c.closed == (1008, "partial_timeout") and b.closed is None
    server.expire_partials(19.5)
    assert b.closed == (1008, "partial_timeout")
    assert server.partial_bytes == 0 and server.partial_count == 0


# ------------------------------------------------------------------ real sockets


class RawSocket:
    """A WebSocket spoken by hand, to send a frame's beginning and never its end."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, router_did: str) -> RawSocket:
        signer = Signer.generate()
        token = connect_token(signer, router_did)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET /connect/as/{signer.did_key} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Protocol: authorization, {token}, hearth.v1\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert head.startswith(b"HTTP/1.1 101 "), head
        raw = cls(reader, writer)
        opcode, _ = await raw.read_frame()  # welcome
        assert opcode == 2
        return raw

    async def read_frame(self) -> tuple[int, bytes]:
        b0, b1 = await asyncio.wait_for(self.reader.readexactly(2), TIMEOUT)
        length = b1 & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return b0 & 0x0F, await asyncio.wait_for(self.reader.readexactly(length), TIMEOUT)

    async def close_code(self) -> int:
        """Read until the router's close frame; its code."""
        while True:
            opcode, payload = await self.read_frame()
            if opcode == 8:
                code: int = struct.unpack("!H", payload[:2])[0]
                return code

    async def begin(self, size: int, sent: int) -> None:
        """Announce a binary frame of `size` bytes and send the first `sent` of them."""
        # A masked client frame with a zero mask: the payload goes as it is.
        header = bytearray(encode_frame_header(2, size))
        header[1] |= 0x80
        self.writer.write(bytes(header) + b"\0\0\0\0" + b"x" * sent)
        await self.writer.drain()

    def abort(self) -> None:
        self.writer.transport.abort()


async def test_the_oldest_unfinished_frames_are_closed_over_the_budget(tmp_path: Path) -> None:
    running, task = await start_router(tmp_path, max_partial_bytes=3 * MiB, partial_timeout=0.0)
    state = running.state
    socks: list[RawSocket] = []
    try:
        for i in range(5):
            raw = await RawSocket.open(running.port, running.did)
            socks.append(raw)
            await raw.begin(MiB, 900 * 1024)
            held = min(i + 1, 3)
            await until(lambda held=held: state.partial_count == held)  # type: ignore[misc]
            assert state.partial_bytes <= 3 * MiB
        assert [await raw.close_code() for raw in socks[:2]] == [1013, 1013]
        assert state.router.stats.closed["partial_budget"] == 2
        # The three others are still there and their frames can finish.
        for raw in socks[2:]:
            raw.writer.write(b"x" * (MiB - 900 * 1024))
        await until(lambda: state.partial_count == 0)
        assert state.partial_bytes == 0
        assert len(state.router.connections) == 3
    finally:
        for raw in socks:
            raw.abort()
        await stop_router(running, task)


async def test_an_unfinished_frame_times_out(tmp_path: Path) -> None:
    running, task = await start_router(
        tmp_path, partial_timeout=200 * MS, ping_interval=0.0, idle_timeout=0.0
    )
    try:
        raw = await RawSocket.open(running.port, running.did)
        await raw.begin(64 * 1024, 1000)
        assert await raw.close_code() == 1008
        assert running.state.router.stats.closed["partial_timeout"] == 1
        assert running.state.partial_bytes == 0
        raw.abort()
    finally:
        await stop_router(running, task)


# ------------------------------------------------------------------ real process


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def test_router_process_memory_stays_within_the_partial_budget(tmp_path: Path) -> None:
    budget = 8 * MiB
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hearth", "router", "--port", "0",
        "--data-dir", str(tmp_path), "--log-level", "warning",
        env={**os.environ, "HEARTH_ROUTER_MAX_PARTIAL_BYTES": str(budget),
             "HEARTH_ROUTER_PING_INTERVAL": "0"},
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    socks: list[RawSocket] = []
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)).decode()
        url = line.split(" on ", 1)[1].strip()  # "router <version> on http://127.0.0.1:PORT"
        port, did = int(url.rsplit(":", 1)[1]), web_did_for_url(url)
        warm = await RawSocket.open(port, did)  # the first connection loads code
        await warm.begin(MiB, MiB - 1)
        warm.abort()
        before = rss(proc.pid)
        closed = 0
        for _ in range(60):  # 60 x ~1 MiB unfinished: ~60 MiB held without a budget
            raw = await RawSocket.open(port, did)
            socks.append(raw)
            await raw.begin(MiB, MiB - 1)
        for raw in socks[: -(budget // MiB)]:  # all but the newest few are closed
            closed += await raw.close_code() == 1013
        grown = rss(proc.pid) - before
        assert closed == len(socks) - budget // MiB
        assert grown < budget + 16 * MiB, f"RSS grew by {grown / MiB:.0f} MiB"
    finally:
        for raw in socks:
            raw.abort()
        proc.terminate()
        await proc.wait()
