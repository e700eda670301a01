"""A real router on port 0 (restartable on the same data dir) and a small frame client."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import websockets
from websockets.asyncio.client import ClientConnection, connect

from hearth.config import ServiceConfig, Settings
from hearth.identity import web_did_for_url
from hearth.jwt import Signer, mint_service_jwt
from router.app import SERVICE, create_app
from router.frames import decode_frame, encode_frame
from tests.notify.helpers import MS, WAIT

CONNECT_LXM = "chat.hearth.v1.router.connect"


@dataclass
class Router:
    url: str
    did: str
    port: int

    @property
    def ws_base(self) -> str:
        return "ws" + self.url[4:]

    async def xrpc(
        self, signer: Signer | None, method: str, body: dict[str, Any]
    ) -> httpx.Response:
        nsid = f"chat.hearth.v1.push.{method}"
        headers = {}
        if signer is not None:
            token = mint_service_jwt(signer, iss=signer.did_key, aud=self.did, lxm=nsid)
            headers["Authorization"] = f"Bearer {token}"
        async with httpx.AsyncClient(timeout=WAIT) as client:
            if method == "vapidPublicKey":
                return await client.get(f"{self.url}/xrpc/{nsid}")
            return await client.post(f"{self.url}/xrpc/{nsid}", json=body, headers=headers)


@contextlib.asynccontextmanager
async def running_router(
    data_dir: Path,
    port: int = 0,
    *,
    allow_private_hosts: bool = True,
    nameservers: tuple[tuple[str, int], ...] = (),
    **options: object,
) -> AsyncIterator[Router]:
    """Serve the router app until the block ends. Pass `port` to come back on the same one.

    Push endpoints in these tests are on loopback, so HEARTH_ALLOW_PRIVATE_HOSTS
    is on unless `allow_private_hosts=False` (as in production). `nameservers`:
    HEARTH_DNS_NAMESERVERS (push endpoint names).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    port = sock.getsockname()[1]
    settings = Settings(
        host="127.0.0.1",
        port=port,
        data_dir=data_dir,
        dns_nameservers=nameservers,
        allow_private_hosts=allow_private_hosts,
    )
    opts: dict[str, object] = {o.name: o.default for o in SERVICE.options}
    opts.update({"push_allow_http": True, "ping_interval": 0.0, "idle_timeout": 0.0})
    opts.update(options)
    config = ServiceConfig("router", settings, opts)
    uv = uvicorn.Config(
        create_app(config),
        log_config=None,
        access_log=False,
        lifespan="on",
        ws_per_message_deflate=False,
        timeout_graceful_shutdown=1,
        **dict(SERVICE.uvicorn_options(config)),
    )
    server = uvicorn.Server(uv)
    server.config.install_signal_handlers = False  # type: ignore[attr-defined]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # uvicorn has no start-up event to wait on
        if task.done():
            task.result()
            raise RuntimeError("router stopped during start-up")
        await asyncio.sleep(5 * MS)
    try:
        yield Router(settings.url, web_did_for_url(settings.url), port)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, WAIT)
        sock.close()


class Client:
    """One WebSocket connection speaking raw frames."""

    def __init__(self, ws: ClientConnection, did: str) -> None:
        self.ws = ws
        self.did = did

    @classmethod
    async def open(cls, router: Router, signer: Signer, device: str | None = None) -> Client:
        token = mint_service_jwt(signer, iss=signer.did_key, aud=router.did, lxm=CONNECT_LXM)
        ws = await connect(
            f"{router.ws_base}/connect/as/{signer.did_key}",
            subprotocols=[
                websockets.Subprotocol("authorization"),
                websockets.Subprotocol(token),
                websockets.Subprotocol("hearth.v1"),
            ],
            compression=None,
            open_timeout=WAIT,
        )
        client = cls(ws, signer.did_key)
        header, _ = await client.recv()
        assert header[0] == "welcome"
        if device is not None:
            await client.send(["device", device])
        return client

    async def send(self, header: list[Any], body: bytes = b"") -> None:
        await self.ws.send(encode_frame(header, body))

    async def recv(self) -> tuple[list[Any], bytes]:
        data = await asyncio.wait_for(self.ws.recv(decode=False), WAIT)
        assert isinstance(data, bytes)
        header, body = decode_frame(data)
        return list(header), bytes(body)

    async def sync(self) -> None:
        """Round-trip a bad frame: every frame the router sent before its error arrives first."""
        await self.ws.send(b"\x00")

    async def expect(self, verb: str) -> tuple[list[Any], bytes]:
        header, body = await self.recv()
        assert header[0] == verb, header
        return header, body

    async def close(self) -> None:
        await self.ws.close()
