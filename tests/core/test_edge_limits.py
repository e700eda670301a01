"""The HTTP edge of a real `hearth up`: request bodies are capped while they are read,
unfinished requests time out, one address cannot take every connection, odd
paths are refused cleanly, and the proxy's logs keep query strings out.

One `hearth up` (a subprocess, so its memory is its own) serves the module;
its log goes to a file that tests read.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import websockets.asyncio.client

from hearth.identity import web_did_for_url
from hearth.jwt import Signer, mint_service_jwt
from tests.timing import MS

SERVICES = ("frontend", "resolver", "keyserver", "router", "syncserver")
HEADER_TIMEOUT = 1500 * MS
BODY_TIMEOUT = 3000 * MS
SEND_TIMEOUT = 1500 * MS
BIG_FILE = 256 * 1024 * 1024
PER_ADDRESS = 24
BIG = 300 * 1024 * 1024  # what the issue sent
CHUNK = 1 << 20


@dataclass
class Stack:
    proc: subprocess.Popen[bytes]
    ports: dict[str, int]
    log: Path

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def rss(self) -> int:
        """Resident memory of the `hearth up` process, bytes."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_http(url: str) -> None:
    deadline = time.monotonic() + 30_000 * MS
    while True:
        try:
            httpx.get(url, timeout=5)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("edge")
    dist = tmp / "dist"
    dist.mkdir()
    (dist / "index.html").write_text("<!doctype html><title>Hearth</title>")
    with (dist / "big.bin").open("wb") as big:
        big.truncate(BIG_FILE)  # sparse: costs no disk
    ports = {name: free_port() for name in SERVICES}
    env = {
        **os.environ,
        **{f"HEARTH_{name.upper()}_PORT": str(port) for name, port in ports.items()},
        "HEARTH_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
        "HEARTH_BODY_TIMEOUT": str(BODY_TIMEOUT),
        "HEARTH_SEND_TIMEOUT": str(SEND_TIMEOUT),
        "HEARTH_FRONTEND_DIR": str(dist),
        "HEARTH_MAX_CONNECTIONS_PER_ADDRESS": str(PER_ADDRESS),
        "HEARTH_LOG_LEVEL": "info",
    }
    log = tmp / "hearth.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hearth", "up", "--data-dir", str(tmp / "data")],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        for name in SERVICES:
            wait_http(f"http://127.0.0.1:{ports[name]}/xrpc/_health")
        yield Stack(proc, ports, log)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def stream_body(port: int, head: bytes, total: int, *, chunked: bool) -> bytes:
    """Send `head`, then up to `total` body bytes until the server answers; the answer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30_000 * MS)
    chunk = (b"%x\r\n" % CHUNK + b"x" * CHUNK + b"\r\n") if chunked else b"x" * CHUNK
    answer = b""
    try:
        sock.sendall(head)
        sent = 0
        while sent < total:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            sock.sendall(chunk)
            sent += CHUNK
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        sock.close()
    return answer


def post_head(path: str, port: int, *, chunked: bool, auth: str | None = None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Content-Type: application/json"]
    lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {BIG}")
    if auth:
        lines.append(f"Authorization: Bearer {auth}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer.split(b" ", 2)[1])


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "streamed"])
def test_proxy_refuses_a_300_mb_body_before_the_process_grows(stack: Stack, chunked: bool) -> None:
    port = stack.ports["frontend"]
    before = stack.rss()
    path = "/svc/syncserver/xrpc/chat.hearth.v1.sync.setAccess"
    answer = stream_body(port, post_head(path, port, chunked=chunked), BIG, chunked=chunked)
    assert status_of(answer) == 413
    assert stack.rss() - before < 64 * 1024 * 1024


def test_push_register_refuses_a_300_mb_body_before_the_process_grows(stack: Stack) -> None:
    port = stack.ports["router"]
    nsid = "chat.hearth.v1.push.register"
    path = f"/xrpc/{nsid}"
    # Without a token the body is never read.
    answer = stream_body(port, post_head(path, port, chunked=False), BIG, chunked=False)
    assert status_of(answer) == 401
    signer = Signer.generate()
    aud = web_did_for_url(stack.url("router"))
    before = stack.rss()
    for chunked in (False, True):
        token = mint_service_jwt(signer, iss=signer.did_key, aud=aud, lxm=nsid)
        head = post_head(path, port, chunked=chunked, auth=token)
        answer = stream_body(port, head, BIG, chunked=chunked)
        assert status_of(answer) == 413, answer[:300]
    assert stack.rss() - before < 64 * 1024 * 1024


def test_deeply_nested_json_is_a_bad_request(stack: Stack) -> None:
    signer = Signer.generate()
    nsid = "chat.hearth.v1.push.register"
    aud = web_did_for_url(stack.url("router"))
    token = mint_service_jwt(signer, iss=signer.did_key, aud=aud, lxm=nsid)
    r = httpx.post(
        f"{stack.url('router')}/xrpc/{nsid}",
        content=b"[" * 10_000,
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 400 and r.json()["error"] == "InvalidRequest"


def test_nul_in_a_path_is_a_client_error(stack: Stack) -> None:
    for path in ("/%00", "/x%00.js", "/svc/keyserver/%00", "/svc/keyserver/xrpc/%00x", "/a" * 3000):
        r = httpx.get(stack.url("frontend") + path)
        assert 400 <= r.status_code < 500 or r.status_code == 200, (path, r.status_code)
        assert r.status_code != 500
    for name in SERVICES[1:]:
        r = httpx.get(stack.url(name) + "/xrpc/%00")
        assert r.status_code in (400, 404), (name, r.status_code)


def test_proxy_logs_keep_query_values_out(stack: Stack) -> None:
    secret_doc, secret_token = "SecretDocumentId4Q", "SecretTokenValue7Z"
    url = (
        f"{stack.url('frontend')}/svc/syncserver/xrpc/chat.hearth.v1.sync.export"
        f"?documentId={secret_doc}&token={secret_token}"
    )
    assert httpx.get(url).status_code < 500
    r = httpx.get(f"{stack.url('frontend')}/svc/resolver/xrpc/_health?token={secret_token}")
    assert r.status_code == 200
    # The proxy's client logged its requests (at INFO), without their queries.
    deadline = time.monotonic() + 5000 * MS
    while "/xrpc/_health" not in stack.log_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    text = stack.log_text()
    assert "/xrpc/_health" in text
    assert secret_doc not in text and secret_token not in text


async def _slow_head(port: int) -> float:
    """Send a request head one byte at a time, 1/10 of the timeout apart; seconds until
    the server closed the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = time.monotonic()
    head = b"GET /xrpc/_health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
    try:
        for byte in head:
            writer.write(bytes([byte]))
            try:
                data = await asyncio.wait_for(reader.read(1), HEADER_TIMEOUT / 10)
            except TimeoutError:
                continue
            assert data == b"", data
            return time.monotonic() - start
        raise AssertionError("the head was never cut off")
    except ConnectionResetError:
        return time.monotonic() - start
    finally:
        writer.close()


async def _silent(port: int) -> float:
    """Connect and send nothing; seconds until the server closed the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = time.monotonic()
    try:
        assert await asyncio.wait_for(reader.read(), HEADER_TIMEOUT * 4) == b""
        return time.monotonic() - start
    finally:
        writer.close()


async def test_slow_request_heads_are_closed_on_every_service(stack: Stack) -> None:
    took = await asyncio.gather(
        *(_slow_head(stack.ports[name]) for name in SERVICES),
        *(_silent(stack.ports[name]) for name in SERVICES),
    )
    for name, seconds in zip(SERVICES * 2, took, strict=True):
        assert HEADER_TIMEOUT * 0.9 <= seconds <= HEADER_TIMEOUT * 4, (name, seconds)


async def test_one_address_over_its_cap_is_refused_while_another_is_served(stack: Stack) -> None:
    for name in SERVICES:
        port = stack.ports[name]
        held = []
        try:
            for _ in range(PER_ADDRESS):
                held.append(
                    await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.2", 0))
                )
            # The connections are in once the server answers one of them.
            reader, writer = held[-1]
            writer.write(b"GET /xrpc/_health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 200")
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=("127.0.0.2", 0)
            )
            held.append((reader, writer))
            answer = await asyncio.wait_for(reader.read(), 5000 * MS)
            assert answer.startswith(b"HTTP/1.1 503"), (name, answer)
            body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
            assert body["error"] == "TooManyConnections"
            async with httpx.AsyncClient() as client:
                r = await client.get(f"{stack.url(name)}/xrpc/_health")
                assert r.status_code == 200, name
        finally:
            for _, writer in held:
                writer.close()


async def test_a_body_that_never_finishes_is_closed(stack: Stack) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.ports["frontend"])
    start = time.monotonic()
    try:
        writer.write(
            b"POST /svc/resolver/xrpc/_health HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"
        )
        # Whatever the proxy answers, the connection ends within the body timeout.
        await asyncio.wait_for(reader.read(), BODY_TIMEOUT * 4)
        assert time.monotonic() - start >= BODY_TIMEOUT * 0.9
    finally:
        writer.close()


async def test_websockets_count_against_the_cap_until_they_close(stack: Stack) -> None:
    # Syncserver: anonymous WebSockets are accepted and held.
    port = stack.ports["syncserver"]
    held = [
        await websockets.asyncio.client.connect(
            f"ws://127.0.0.1:{port}/", local_addr=("127.0.0.2", 0)
        )
        for _ in range(PER_ADDRESS)
    ]
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, local_addr=("127.0.0.2", 0)
        )
        answer = await asyncio.wait_for(reader.read(), 5000 * MS)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 503"), answer
        await held.pop().close()
        # Its place is free again once the server has seen the close.
        deadline = time.monotonic() + 5000 * MS
        while True:
            async with httpx.AsyncClient(
                transport=httpx.AsyncHTTPTransport(local_address="127.0.0.2")
            ) as client:
                try:
                    r = await client.get(f"{stack.url('syncserver')}/xrpc/_health")
                except httpx.TransportError:
                    r = None
            if r is not None and r.status_code == 200:
                break
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
    finally:
        for ws in held:
            await ws.close()
    # Router: refused upgrades end their lease too (more than the cap, one after another).
    port = stack.ports["router"]
    for _ in range(PER_ADDRESS + 4):
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, local_addr=("127.0.0.2", 0)
        )
        writer.write(
            b"GET /connect/as/did:key:z6Mkx HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        answer = await asyncio.wait_for(reader.read(), 5000 * MS)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 4"), answer[:100]


def test_syncserver_bodies_are_bounded(stack: Stack) -> None:
    port = stack.ports["syncserver"]
    # setAccess authenticates before it reads: an anonymous body is never read.
    # revokeToken's anonymous body is the token itself: 4 KiB at most. (Nested JSON
    # in an authenticated body is tests/syncserver/test_tokens.py's.)
    for method, status, error in (
        ("setAccess", 401, "AuthenticationRequired"),
        ("revokeToken", 413, "PayloadTooLarge"),
    ):
        url = f"{stack.url('syncserver')}/xrpc/chat.hearth.v1.sync.{method}"
        r = httpx.post(url, content=b"[" * 100_000)
        assert r.status_code == status and r.json()["error"] == error, (method, r.text)
        path = f"/xrpc/chat.hearth.v1.sync.{method}"
        answer = stream_body(port, post_head(path, port, chunked=True), BIG, chunked=True)
        assert status_of(answer) == status, (method, answer[:200])


def test_an_answer_left_unread_drops_the_connection(stack: Stack) -> None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(30_000 * MS)
    sock.connect(("127.0.0.1", stack.ports["frontend"]))
    try:
        sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        # Read nothing until the service has given up on this client.
        deadline = time.monotonic() + SEND_TIMEOUT + 10_000 * MS
        while "answer unread" not in stack.log_text():
            assert time.monotonic() < deadline, "the connection was never dropped"
            time.sleep(0.02)
        received = 0
        try:
            while data := sock.recv(1 << 20):
                received += len(data)
        except ConnectionResetError:
            pass
        assert 0 < received < BIG_FILE // 2
    finally:
        sock.close()
