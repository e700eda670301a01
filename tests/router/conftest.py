"""A real router on port 0 for every test that needs one, and helpers around it."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import websockets
from websockets.asyncio.client import ClientConnection, connect

from hearth.config import ServiceConfig, Settings
from hearth.identity import web_did_for_url
from hearth.jwt import Signer, mint_service_jwt
from router.app import SERVICE, create_app
from router.client import CONNECT_LXM
from router.frames import decode_frame, encode_frame
from router.messages import ServerMessage, parse_server_message
from router.server import STATE_KEY, RouterServer

# Every wait in these tests is a multiple of MS (websockets' convention).
MS = 0.001 * float(os.environ.get("HEARTH_TESTS_TIMEOUT_FACTOR", "1"))
TIMEOUT = 5000 * MS


@dataclass
class RunningRouter:
    url: str
    did: str
    server: uvicorn.Server
    app: Any

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].rstrip("/"))

    @property
    def ws_base(self) -> str:
        return "ws" + self.url[4:]

    @property
    def state(self) -> RouterServer:
        lifespan_state = self.server.lifespan.state  # type: ignore[attr-defined]
        router = lifespan_state[STATE_KEY]
        assert isinstance(router, RouterServer)
        return router


async def start_router(
    tmp_path: Path,
    port: int = 0,
    *,
    http_hosts: dict[str, tuple[str, int]] | None = None,
    **options: object,
) -> tuple[RunningRouter, asyncio.Task[None]]:
    """A router on 127.0.0.1:`port` (0: any free port; pass the old one to restart it).

    `http_hosts` is HEARTH_HTTP_HOSTS for its resolver (did:web issuers on loopback).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    port = sock.getsockname()[1]
    settings = Settings(host="127.0.0.1", port=port, data_dir=tmp_path, http_hosts=http_hosts or {})
    opts: dict[str, object] = {o.name: o.default for o in SERVICE.options}
    opts.update(options)
    config = ServiceConfig("router", settings, opts)
    app = create_app(config)
    uv = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="on",
        ws_per_message_deflate=False,
        **dict(SERVICE.uvicorn_options(config)),
    )
    server = uvicorn.Server(uv)
    server.config.install_signal_handlers = False  # type: ignore[attr-defined]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(10 * MS)
    return RunningRouter(settings.url, web_did_for_url(settings.url), server, app), task


async def stop_router(running: RunningRouter, task: asyncio.Task[None]) -> None:
    running.server.should_exit = True
    await asyncio.wait_for(task, TIMEOUT)


@pytest.fixture
async def router(tmp_path: Path) -> AsyncIterator[RunningRouter]:
    running, task = await start_router(tmp_path)
    yield running
    await stop_router(running, task)


def connect_token(signer: Signer, router_did: str, **kw: Any) -> str:
    return mint_service_jwt(signer, iss=signer.did_key, aud=router_did, lxm=CONNECT_LXM, **kw)


class Raw:
    """A bare websockets connection speaking frames, for exact wire assertions."""

    def __init__(self, ws: ClientConnection, did: str, conn_id: str, info: Mapping[str, Any]):
        self.ws = ws
        self.did = did
        self.conn_id = conn_id
        self.info = info

    async def send(self, header: list[Any], body: bytes = b"") -> None:
        await self.ws.send(encode_frame(header, body))

    async def recv(self) -> tuple[list[Any], bytes]:
        data = await asyncio.wait_for(self.ws.recv(decode=False), TIMEOUT)
        assert isinstance(data, bytes)
        header, body = decode_frame(data)
        return header, bytes(body)

    async def recv_message(self) -> ServerMessage:
        header, body = await self.recv()
        return parse_server_message(header, body)

    async def expect_nothing(self) -> None:
        """Round-trip a bad frame: its `error` must be the next frame we get."""
        await self.ws.send(b"\x00")
        header, _ = await self.recv()
        assert header[:2] == ["error", "short_frame"], header

    async def close(self) -> None:
        await self.ws.close()


async def open_raw(
    router: RunningRouter,
    signer: Signer | None = None,
    *,
    subprotocols: list[str] | None = None,
    did: str | None = None,
) -> Raw:
    """Connect as `signer`'s did:key (or as `did`, with `subprotocols` carrying its token).

    The connection offers `hearth.v1` after the token, so it gets `welcome`
    and every extension frame (`open_v0` connects as a Roomy v0 client).
    """
    signer = signer or Signer.generate()
    did = did or signer.did_key
    protos = [*(subprotocols or ["authorization", connect_token(signer, router.did)]), "hearth.v1"]
    ws = await connect(
        f"{router.ws_base}/connect/as/{did}",
        subprotocols=[websockets.Subprotocol(p) for p in protos],
        compression=None,
        open_timeout=TIMEOUT,
        max_queue=None,  # unread frames must never pause reading (and delay close)
    )
    assert ws.subprotocol == "authorization"
    data = await asyncio.wait_for(ws.recv(decode=False), TIMEOUT)
    assert isinstance(data, bytes)
    header, _ = decode_frame(data)
    assert header[0] == "welcome" and header[1] == did
    return Raw(ws, did, header[2], header[3])


async def open_v0(router: RunningRouter, signer: Signer | None = None) -> ClientConnection:
    """Connect exactly as Roomy's client does (`["authorization", token]`, no `hearth.v1`).

    Such a client never learns its connId (no `welcome`): find it in the core.
    """
    signer = signer or Signer.generate()
    token = connect_token(signer, router.did)
    ws = await connect(
        f"{router.ws_base}/connect/as/{signer.did_key}",
        subprotocols=[websockets.Subprotocol("authorization"), websockets.Subprotocol(token)],
        compression=None,
        open_timeout=TIMEOUT,
        max_queue=None,
    )
    assert ws.subprotocol == "authorization"
    return ws
