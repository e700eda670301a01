"""The loopback PDS the sign-in browser test stands on mints tokens our verifier accepts."""

from __future__ import annotations

import time

import httpx
import pytest

from hearth.auth import AuthError, ServiceAuthVerifier
from hearth.keys import KeyType
from resolver import Resolver
from tests.frontend.fake_pds import FakePds
from tests.servers import bound_socket, serve_app
from tests.world import World

AUD = "did:web:keys.test"
LXM = "chat.hearth.v1.key.private"


@pytest.mark.parametrize("key_type", [KeyType.P256, KeyType.SECP256K1])
async def test_sessions_and_service_tokens(world: World, key_type: KeyType) -> None:
    pds = FakePds()
    async with serve_app(pds.app(), bound_socket()) as url:
        pds.url = url
        ident = world.new_plc_identity(key_type)
        pds.add(ident, "app-pass-word")
        assert ident.doc["service"][0]["serviceEndpoint"] == url
        resolver = Resolver.from_settings(world.settings())
        verifier = ServiceAuthVerifier(AUD, resolver.signing_key)
        async with httpx.AsyncClient(base_url=url + "/xrpc/") as http:
            preflight = await http.options("com.atproto.server.getServiceAuth")
            assert preflight.headers["access-control-allow-origin"] == "*"

            wrong = await http.post(
                "com.atproto.server.createSession",
                json={"identifier": ident.handle, "password": "nope"},
            )
            assert wrong.status_code == 401
            ok = await http.post(
                "com.atproto.server.createSession",
                json={"identifier": ident.handle, "password": "app-pass-word"},
            )
            session = ok.json()
            assert session["did"] == ident.did

            async def service_token(access: str) -> httpx.Response:
                return await http.get(
                    "com.atproto.server.getServiceAuth",
                    params={"aud": AUD, "lxm": LXM, "exp": int(time.time()) + 60},
                    headers={"Authorization": f"Bearer {access}"},
                )

            token = (await service_token(session["accessJwt"])).json()["token"]
            verified = await verifier.verify(token, lxm=LXM)
            assert verified.iss == ident.did
            with pytest.raises(AuthError):
                await verifier.verify(token, lxm=LXM)  # single use, as any service-auth JWT

            pds.expire_access_tokens()
            expired = await service_token(session["accessJwt"])
            assert (expired.status_code, expired.json()["error"]) == (400, "ExpiredToken")
            refresh = {"Authorization": f"Bearer {session['refreshJwt']}"}
            renewed = (await http.post("com.atproto.server.refreshSession", headers=refresh)).json()
            again = await service_token(renewed["accessJwt"])
            assert (await verifier.verify(again.json()["token"], lxm=LXM)).iss == ident.did
            reused = await http.post("com.atproto.server.refreshSession", headers=refresh)
            assert reused.status_code == 401
        await resolver.aclose()
