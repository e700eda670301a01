"""Router tokens for an atproto (did:web) user: the JWT's key comes from the resolver."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hearth.identity import web_did_for_url
from hearth.jwt import Signer, mint_service_jwt
from hearth.keys import KeyType
from tests.router.conftest import TIMEOUT, open_raw, start_router, stop_router
from tests.router.test_server import refused, until


async def test_did_web_user_gets_a_router_token(tmp_path: Path) -> None:
    signer = Signer.generate(KeyType.P256)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    did = web_did_for_url(url)

    async def did_json(_request: Request) -> Response:
        return JSONResponse(
            {
                "id": did,
                "verificationMethod": [
                    {
                        "id": f"{did}#atproto",
                        "type": "Multikey",
                        "controller": did,
                        "publicKeyMultibase": signer.public_key.multibase,
                    }
                ],
            }
        )

    host = uvicorn.Server(
        uvicorn.Config(
            Starlette(routes=[Route("/.well-known/did.json", did_json)]),
            log_config=None,
            lifespan="off",
        )
    )
    host_task = asyncio.create_task(host.serve(sockets=[sock]))
    # Loopback did:web hosts are fetched only when mapped (HEARTH_HTTP_HOSTS).
    port = sock.getsockname()[1]
    router, task = await start_router(
        tmp_path, http_hosts={f"127.0.0.1:{port}": ("127.0.0.1", port)}
    )
    try:
        await until(lambda: bool(host.started))
        nsid = "chat.roomy.v0.router.token"
        jwt = mint_service_jwt(signer, iss=did, aud=router.did, lxm=nsid)
        async with httpx.AsyncClient() as http:
            r = await http.get(
                f"{router.url}/xrpc/{nsid}", headers={"Authorization": f"Bearer {jwt}"}
            )
            assert r.status_code == 200, r.text
            token = r.json()["token"]
            # A key that is not the DID's #atproto key is refused.
            forged = mint_service_jwt(
                Signer.generate(KeyType.P256), iss=did, aud=router.did, lxm=nsid
            )
            r = await http.get(
                f"{router.url}/xrpc/{nsid}", headers={"Authorization": f"Bearer {forged}"}
            )
            assert r.status_code == 401
        # The did:web user connects with its router token (no did:key anywhere).
        assert (
            await refused(
                router,
                "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK",
                ["authorization", token],
            )
            == 403
        )
        token = None
        async with httpx.AsyncClient() as http:
            jwt = mint_service_jwt(signer, iss=did, aud=router.did, lxm=nsid)
            r = await http.get(
                f"{router.url}/xrpc/{nsid}", headers={"Authorization": f"Bearer {jwt}"}
            )
            token = r.json()["token"]
        conn = await open_raw(router, subprotocols=["authorization", token], did=did)
        assert conn.did == did
        await conn.close()
    finally:
        await stop_router(router, task)
        host.should_exit = True
        await asyncio.wait_for(host_task, TIMEOUT)
