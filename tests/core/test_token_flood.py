"""A flood of free did:key identities cannot lock anybody else out of token auth.

Real router, syncserver and keyserver on loopback, resolving atproto users
against `world`. The flood comes from other loopback addresses (127.0.0.2,
127.0.0.3: clients bind them as their source) with ~100 fresh did:key
identities, each sending several valid tokens; the services' did:key jti
caches (and the router's store of live router tokens) are shrunk so that what
the per-address budgets let through fills them many times over. Meanwhile a
did:key user and an atproto (did:plc) user on 127.0.0.1 keep authenticating
to all three services and must never be refused.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import connect

from hearth.config import ServiceConfig, build_options
from hearth.jwt import Signer, mint_service_jwt
from hearth.keys import KeyType
from keyserver.app import OPTIONS as KEYSERVER_OPTIONS
from keyserver.app import create_app as keyserver_app
from router.app import SERVICE as ROUTER
from router.client import CONNECT_LXM
from router.frames import decode_frame
from syncserver.app import OPTIONS as SYNCSERVER_OPTIONS
from syncserver.app import create_app as syncserver_app
from syncserver.app import uvicorn_options as syncserver_uvicorn_options
from tests.servers import bound_socket, serve_app
from tests.timing import MS
from tests.world import Identity, World

TIMEOUT = 10_000 * MS
ROUTER_TOKEN = "chat.hearth.v1.router.token"
SYNC_TOKEN = "chat.hearth.v1.sync.token"
KEY_PRIVATE = "chat.hearth.v1.key.private"
HELD_BY_OWNER = 404  # key.private's answer to an authenticated did:key

# Small enough that the flood's accepted tokens fill each did:key cache many
# times over; the per-address budget is the default's shape, scaled down.
CAPACITY = 40
RATE = 20  # per address and second
BURST = 60
LIMITS = {
    "auth_rate": str(RATE),
    "auth_burst": str(BURST),
    "auth_did_key_capacity": str(CAPACITY),
    "auth_atproto_capacity": str(CAPACITY),
}
FLOOD_ADDRESSES = ("127.0.0.2", "127.0.0.3")
FLOOD_IDENTITIES = 100
TOKENS_EACH = 6  # per identity and endpoint: 600 valid tokens per endpoint
FLOOD_WORKERS = 8  # concurrent flood requests per endpoint and address


@dataclass
class Services:
    router: str
    router_did: str
    sync: str
    sync_did: str
    keys: str
    keys_did: str


def service_config(
    world: World, name: str, sock: Any, options: Any, tmp: Path, **extra: str
) -> ServiceConfig:
    env = {f"HEARTH_{name.upper()}_{k.upper()}": v for k, v in {**LIMITS, **extra}.items()}
    if name == "syncserver":
        env["HEARTH_SYNCSERVER_MEMORY_STORAGE"] = "1"
    settings = world.settings(port=sock.getsockname()[1], data_dir=tmp / name)
    return ServiceConfig(name, settings, build_options(None, name, options, env))


@contextlib.asynccontextmanager
async def running_services(
    world: World, tmp: Path, **router_options: str
) -> AsyncIterator[Services]:
    socks = [bound_socket() for _ in range(3)]
    router_options = {"token_capacity": str(CAPACITY), **router_options}  # live router tokens
    router_cfg = service_config(world, "router", socks[0], ROUTER.options, tmp, **router_options)
    sync_cfg = service_config(world, "syncserver", socks[1], SYNCSERVER_OPTIONS, tmp)
    keys_cfg = service_config(world, "keyserver", socks[2], KEYSERVER_OPTIONS, tmp)
    async with (
        serve_app(
            ROUTER.create_app(router_cfg), socks[0], **ROUTER.uvicorn_options(router_cfg)
        ) as router,
        serve_app(
            syncserver_app(sync_cfg), socks[1], **syncserver_uvicorn_options(sync_cfg)
        ) as sync,
        serve_app(keyserver_app(keys_cfg), socks[2]) as keys,
        httpx.AsyncClient() as http,
    ):
        dids = [
            (await http.get(f"{u}/.well-known/did.json")).json()["id"] for u in (router, sync, keys)
        ]
        yield Services(router, dids[0], sync, dids[1], keys, dids[2])


def did_key_jwt(signer: Signer, aud: str, lxm: str) -> str:
    return mint_service_jwt(signer, iss=signer.did_key, aud=aud, lxm=lxm)


async def ws_connect(router: str, did: str, token: str, **kw: Any) -> None:
    """Connect to the router as `did` and wait for its welcome; raises if refused."""
    async with connect(
        f"ws{router[4:]}/connect/as/{did}",
        subprotocols=[
            websockets.Subprotocol("authorization"),
            websockets.Subprotocol(token),
            websockets.Subprotocol("hearth.v1"),
        ],
        open_timeout=TIMEOUT,
        **kw,
    ) as ws:
        data = await asyncio.wait_for(ws.recv(decode=False), TIMEOUT)
        assert isinstance(data, bytes)
        assert decode_frame(data)[0][:2] == ["welcome", did]


async def ws_status(
    router: str, did: str, token: str, source: str, forwarded_for: str | None = None
) -> int:
    """The HTTP status of a WebSocket upgrade from `source` (101: accepted)."""
    extra = f"X-Forwarded-For: {forwarded_for}\r\n" if forwarded_for else ""
    port = int(router.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    try:
        writer.write(
            (
                f"GET /connect/as/{did} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Protocol: authorization, {token}\r\n{extra}\r\n"
            ).encode()
        )
        line = await asyncio.wait_for(reader.readline(), TIMEOUT)
        return int(line.split()[1])
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@dataclass
class Flood:
    """Per endpoint: how many of the flood's tokens were accepted and refused (by status)."""

    statuses: dict[str, Counter[int]]
    retry_after: set[str]


async def flood(services: Services, flooders: list[Signer], source: str, out: Flood) -> None:
    transport = httpx.AsyncHTTPTransport(local_address=source)
    async with httpx.AsyncClient(transport=transport, timeout=TIMEOUT) as http:
        endpoints: list[tuple[str, Callable[[Signer], Any]]] = [
            (
                "router.token",
                lambda s: http_get(http, services.router, services.router_did, ROUTER_TOKEN, s),
            ),
            (
                "sync.token",
                lambda s: http_get(http, services.sync, services.sync_did, SYNC_TOKEN, s),
            ),
            (
                "key.private",
                lambda s: http_get(http, services.keys, services.keys_did, KEY_PRIVATE, s),
            ),
            ("router.connect", lambda s: ws_flood(services, s, source)),
        ]

        async def worker(name: str, send: Callable[[Signer], Any], mine: list[Signer]) -> None:
            for _ in range(TOKENS_EACH):
                for signer in mine:
                    status, retry_after = await send(signer)
                    out.statuses.setdefault(name, Counter())[status] += 1
                    if retry_after is not None:
                        out.retry_after.add(retry_after)

        async with asyncio.TaskGroup() as tg:
            for name, send in endpoints:
                for w in range(FLOOD_WORKERS):
                    tg.create_task(worker(name, send, flooders[w::FLOOD_WORKERS]))


async def http_get(
    http: httpx.AsyncClient, url: str, aud: str, lxm: str, signer: Signer
) -> tuple[int, str | None]:
    r = await http.get(
        f"{url}/xrpc/{lxm}", headers={"Authorization": f"Bearer {did_key_jwt(signer, aud, lxm)}"}
    )
    if r.status_code == 429:
        assert r.json()["error"] == "RateLimitExceeded", r.text
        return 429, r.headers["retry-after"]
    return r.status_code, None


async def ws_flood(services: Services, signer: Signer, source: str) -> tuple[int, None]:
    token = did_key_jwt(signer, services.router_did, CONNECT_LXM)
    return await ws_status(services.router, signer.did_key, token, source), None


async def legitimate_round(services: Services, alice: Signer, bob: Identity) -> None:
    """alice (did:key) and bob (did:plc) authenticate to every service once; all must pass."""
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:

        async def get(url: str, lxm: str, jwt: str, status: int = 200) -> httpx.Response:
            r = await http.get(f"{url}/xrpc/{lxm}", headers={"Authorization": f"Bearer {jwt}"})
            assert r.status_code == status, (url, lxm, r.status_code, r.text)
            return r

        s = services
        await ws_connect(s.router, alice.did_key, did_key_jwt(alice, s.router_did, CONNECT_LXM))
        token = (await get(s.router, ROUTER_TOKEN, bob.jwt(s.router_did, ROUTER_TOKEN))).json()
        await ws_connect(s.router, bob.did, token["token"])
        await get(s.router, ROUTER_TOKEN, did_key_jwt(alice, s.router_did, ROUTER_TOKEN))
        await get(s.sync, SYNC_TOKEN, did_key_jwt(alice, s.sync_did, SYNC_TOKEN))
        await get(s.sync, SYNC_TOKEN, bob.jwt(s.sync_did, SYNC_TOKEN))
        # A did:key holds its own private key: authenticated, then told so.
        await get(s.keys, KEY_PRIVATE, did_key_jwt(alice, s.keys_did, KEY_PRIVATE), HELD_BY_OWNER)
        await get(s.keys, KEY_PRIVATE, bob.jwt(s.keys_did, KEY_PRIVATE))


async def test_a_did_key_flood_never_locks_out_other_users(world: World, tmp_path: Path) -> None:
    alice = Signer.generate()
    bob = world.new_plc_identity(KeyType.SECP256K1)
    flooders = [Signer.generate() for _ in range(FLOOD_IDENTITIES)]
    async with running_services(world, tmp_path) as services:
        out = Flood({}, set())
        started = asyncio.get_running_loop().time()
        flooding = asyncio.gather(
            *(
                flood(services, flooders[i::2], source, out)
                for i, source in enumerate(FLOOD_ADDRESSES)
            )
        )
        rounds = 0
        while not flooding.done():
            await legitimate_round(services, alice, bob)
            rounds += 1
        await flooding
        elapsed = asyncio.get_running_loop().time() - started
        # Every cache is now full of the flood's live entries (they live 60 s):
        # the users still get in.
        await legitimate_round(services, alice, bob)
    assert rounds >= 2, rounds
    by_service: dict[str, Counter[int]] = {}
    for name, statuses in out.statuses.items():
        assert set(statuses) <= {101, 200, HELD_BY_OWNER, 429}, (name, statuses)
        # The router's two endpoints share its budget and its did:key cache.
        by_service.setdefault(name.split(".")[0], Counter()).update(statuses)
    assert set(by_service) == {"router", "sync", "key"}
    for service, statuses in by_service.items():
        accepted = statuses[101] + statuses[200] + statuses[HELD_BY_OWNER]
        # The flood filled the did:key cache several times over (the two
        # addresses' bursts alone are 120 tokens) ...
        assert accepted > 2 * CAPACITY, (service, statuses)
        # ... but never more than its addresses' budgets allow; beyond them it was
        # told to come back later. (A flood slower than the budget on a loaded
        # machine is never refused: the bound is what holds, not the 429 count.)
        allowed = len(FLOOD_ADDRESSES) * (BURST + RATE * elapsed)
        assert accepted <= allowed, (service, statuses, elapsed)
    # The router's two endpoints share one budget: 1,200 requests in one flood
    # outrun it on any machine this suite runs on.
    assert by_service["router"][429] > 0, by_service["router"]
    # The router token store (capacity 40) was filled by the token endpoint too.
    assert out.statuses["router.token"][200] > CAPACITY, out.statuses["router.token"]
    assert out.retry_after and all(int(v) >= 1 for v in out.retry_after)


async def test_a_request_refused_after_the_token_check_leaves_the_token_unused(
    world: World, tmp_path: Path
) -> None:
    alice = Signer.generate()
    bob = world.new_plc_identity()
    async with (
        running_services(world, tmp_path, max_connections_per_did="1") as s,
        httpx.AsyncClient(timeout=TIMEOUT) as http,
    ):
        # The router refuses a second connection of alice (her cap is 1) after
        # checking her token; once the first is gone, the same token connects.
        token = did_key_jwt(alice, s.router_did, CONNECT_LXM)
        async with connect(
            f"ws{s.router[4:]}/connect/as/{alice.did_key}",
            subprotocols=[
                websockets.Subprotocol("authorization"),
                websockets.Subprotocol(did_key_jwt(alice, s.router_did, CONNECT_LXM)),
                websockets.Subprotocol("hearth.v1"),
            ],
            open_timeout=TIMEOUT,
        ) as first:
            await asyncio.wait_for(first.recv(decode=False), TIMEOUT)  # welcome
            assert await ws_status(s.router, alice.did_key, token, "127.0.0.1") == 429
        # The closing handshake is over: the router has forgotten the first connection.
        assert await ws_status(s.router, alice.did_key, token, "127.0.0.1") == 101
        assert await ws_status(s.router, alice.did_key, token, "127.0.0.1") == 403  # now used
        # The keyserver refuses bob's token for another DID's keys (403) before
        # using it up; the same token then fetches his own.
        jwt = bob.jwt(s.keys_did, KEY_PRIVATE)
        url = f"{s.keys}/xrpc/{KEY_PRIVATE}"
        headers = {"Authorization": f"Bearer {jwt}"}
        r = await http.get(url, params={"did": alice.did_key}, headers=headers)
        assert r.status_code == 403, r.text
        assert (await http.get(url, headers=headers)).status_code == 200
        r = await http.get(url, headers=headers)
        assert r.status_code == 401 and "replayed" in r.json()["message"]


async def test_a_connect_behind_a_trusted_proxy_is_charged_to_its_client(
    world: World, tmp_path: Path
) -> None:
    """uvicorn trusts X-Forwarded-For from loopback by default; the router's WebSocket does too."""
    async with running_services(world, tmp_path, auth_burst="2", auth_rate="0.01") as s:

        async def status(source: str, forwarded_for: str) -> int:
            signer = Signer.generate()
            token = did_key_jwt(signer, s.router_did, CONNECT_LXM)
            return await ws_status(s.router, signer.did_key, token, source, forwarded_for)

        # Through the proxy on 127.0.0.1: each client has its own budget.
        assert [await status("127.0.0.1", "203.0.113.7") for _ in range(3)] == [101, 101, 429]
        assert await status("127.0.0.1", "203.0.113.8") == 101
        # From an untrusted peer the header is ignored: its own budget is charged.
        got = [await status("127.0.0.2", f"203.0.113.{10 + i}") for i in range(3)]
        assert got == [101, 101, 429]
