"""Helpers for syncserver tests: an in-process server, identities, raw and Node clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cbor2
import httpx
import websockets

from bench.common import free_port
from hearth.config import ServiceConfig, Settings
from hearth.jwt import Signer, mint_service_jwt
from syncserver.app import OPTIONS, create_app, uvicorn_options
from syncserver.messages import Message, decode_message, encode_message
from tests.servers import bound_socket, serve_app
from tests.timing import MS

JS_DIR = Path(__file__).resolve().parent.parent / "syncserver_js"
HEARTH = Path(sys.executable).parent / "hearth"
# Generous: Node start-up plus automerge wasm load on a busy 2-core machine.
TIMEOUT = 30_000 * MS


@dataclass
class RunningServer:
    url: str
    did: str
    data_dir: Path

    @property
    def ws_url(self) -> str:
        return "ws" + self.url[len("http") :]

    def ws(self, token: str | None = None) -> str:
        return self.ws_url + "/" + (f"?token={token}" if token else "")

    async def token_for(self, signer: Signer) -> str:
        jwt = mint_service_jwt(
            signer, iss=signer.did_key, aud=self.did, lxm="chat.hearth.v1.sync.token"
        )
        async with httpx.AsyncClient() as http:
            r = await http.get(
                self.url + "/xrpc/chat.hearth.v1.sync.token",
                headers={"authorization": f"Bearer {jwt}"},
            )
        assert r.status_code == 200, r.text
        token: str = r.json()["token"]
        return token

    async def xrpc(
        self,
        method: str,
        name: str,
        signer: Signer | None = None,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        bearer: str | None = None,
    ) -> httpx.Response:
        headers = {}
        if signer is not None:
            jwt = mint_service_jwt(
                signer, iss=signer.did_key, aud=self.did, lxm=f"chat.hearth.v1.sync.{name}"
            )
            headers["authorization"] = f"Bearer {jwt}"
        elif bearer is not None:
            headers["authorization"] = f"Bearer {bearer}"
        async with httpx.AsyncClient() as http:
            return await http.request(
                method,
                f"{self.url}/xrpc/chat.hearth.v1.sync.{name}",
                headers=headers,
                params=params,
                json=body,
            )


def server_config(data_dir: Path, port: int, **options: object) -> ServiceConfig:
    opts: dict[str, object] = {o.name: o.default for o in OPTIONS}
    opts.update(options)
    settings = Settings(host="127.0.0.1", port=port, data_dir=data_dir)
    return ServiceConfig("syncserver", settings, opts)


@contextlib.asynccontextmanager
async def running_server(data_dir: Path, **options: object) -> AsyncIterator[RunningServer]:
    sock = bound_socket()
    port = sock.getsockname()[1]
    config = server_config(data_dir, port, **options)
    app = create_app(config)
    async with serve_app(app, sock, **uvicorn_options(config)) as url:
        async with httpx.AsyncClient() as http:
            did = (await http.get(url + "/.well-known/did.json")).json()["id"]
        yield RunningServer(url, did, data_dir)


class RawPeer:
    """A hand-driven automerge-repo peer over a plain WebSocket."""

    def __init__(self, ws: websockets.ClientConnection, peer_id: str) -> None:
        self.ws = ws
        self.peer_id = peer_id
        self.server_peer_id = ""

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(
        cls,
        url: str,
        peer_id: str = "raw-peer",
        *,
        join: bool = True,
        storage_id: str | None = None,
    ) -> AsyncIterator[RawPeer]:
        async with websockets.connect(url, max_size=None, compression=None) as ws:
            peer = cls(ws, peer_id)
            if join:
                meta: dict[str, Any] = {"isEphemeral": storage_id is None}
                if storage_id:
                    meta["storageId"] = storage_id
                await peer.send_raw(
                    {
                        "type": "join",
                        "senderId": peer_id,
                        "peerMetadata": meta,
                        "supportedProtocolVersions": ["1"],
                    }
                )
                reply = await peer.recv()
                assert reply["type"] == "peer", reply
                peer.server_peer_id = reply["senderId"]
            yield peer

    async def send_raw(self, obj: Any) -> None:

        await self.ws.send(cbor2.dumps(obj))

    async def send(self, message: Message) -> None:
        await self.ws.send(encode_message(message))

    async def recv(self, wait: float = TIMEOUT) -> dict[str, Any]:

        data = await asyncio.wait_for(self.ws.recv(), wait)
        assert isinstance(data, bytes)
        value = cbor2.loads(data)
        assert isinstance(value, dict)
        return value

    async def recv_message(self, wait: float = TIMEOUT) -> Message:
        data = await asyncio.wait_for(self.ws.recv(), wait)
        assert isinstance(data, bytes)
        return decode_message(data)


@dataclass
class NodeClients:
    """One Node process running tests/syncserver_js/client.mjs: named automerge-repo clients."""

    proc: asyncio.subprocess.Process
    events: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    _pending: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    _next: int = 0
    _reader: asyncio.Task[None] | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def start(cls) -> AsyncIterator[NodeClients]:
        node = shutil.which("node")
        assert node, "node is required (scripts/install-test-deps.sh)"
        assert (JS_DIR / "node_modules").is_dir(), "run scripts/install-test-deps.sh first"
        proc = await asyncio.create_subprocess_exec(
            node,
            str(JS_DIR / "client.mjs"),
            cwd=JS_DIR,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=64 * 1024 * 1024,
        )
        clients = cls(proc)
        clients._reader = asyncio.create_task(clients._read())
        ready = await asyncio.wait_for(clients.events.get(), TIMEOUT)
        assert ready == {"event": "ready"}
        try:
            yield clients
        finally:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), 5000 * MS)
            except TimeoutError:
                proc.kill()
                await proc.wait()
            clients._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await clients._reader

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                for fut in self._pending.values():
                    if not fut.done():
                        fut.set_exception(RuntimeError("node client exited"))
                return
            obj = json.loads(line)
            if "event" in obj:
                self.events.put_nowait(obj)
                continue
            fut = self._pending.pop(obj.get("id", -1), None)
            if fut is not None and not fut.done():
                fut.set_result(obj)

    async def call(self, op: str, wait: float = 2 * TIMEOUT, **args: Any) -> dict[str, Any]:
        """Run one driver op; its own time limits (`timeoutMs`) scale with the factor too."""
        args.setdefault("timeoutMs", int(TIMEOUT * 1000))
        self._next += 1
        ident = self._next
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ident] = fut
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"id": ident, "op": op, **args}) + "\n").encode())
        await self.proc.stdin.drain()
        reply = await asyncio.wait_for(fut, wait)
        assert reply["ok"], reply.get("error")
        return reply


async def metric(server: RunningServer, name: str, **labels: str) -> float:
    """The current value of one sample on the server's /metrics (0 if absent)."""
    async with httpx.AsyncClient() as http:
        text = (await http.get(server.url + "/metrics")).text
    want = name
    if labels:
        want += "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
    for line in text.splitlines():
        key, _, value = line.rpartition(" ")
        if key == want:
            return float(value)
    return 0.0


async def wait_for_metric(
    server: RunningServer, name: str, at_least: float, **labels: str
) -> float:
    """Poll /metrics until the sample reaches `at_least` (the server's own event count)."""
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while True:
        value = await metric(server, name, **labels)
        if value >= at_least:
            return value
        assert asyncio.get_running_loop().time() < deadline, f"{name}{labels} stayed at {value}"
        await asyncio.sleep(20 * MS)


@contextlib.asynccontextmanager
async def server_process(
    data_dir: Path, *flags: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """`hearth syncserver [flags]` on a free port; yields (process, base URL) once it answers."""
    for _attempt in range(5):
        port = free_port()
        proc = await asyncio.create_subprocess_exec(
            str(HEARTH),
            "syncserver",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            *flags,
            env={**os.environ, "HEARTH_LOG_LEVEL": "warning"},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        async with httpx.AsyncClient() as http:
            while proc.returncode is None and asyncio.get_running_loop().time() < deadline:
                try:
                    if (await http.get(url + "/xrpc/_health")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(20 * MS)
        if proc.returncode is None:
            break
        # The port was taken between our probe and its bind: try another.
    else:
        raise RuntimeError("could not start hearth syncserver")
    try:
        yield proc, url
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


async def server_at(url: str) -> RunningServer:
    """A RunningServer handle for a server started elsewhere (e.g. `server_process`)."""
    async with httpx.AsyncClient() as http:
        did = (await http.get(url + "/.well-known/did.json")).json()["id"]
    return RunningServer(url, did, Path())
