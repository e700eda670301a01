"""A keyserver on a real loopback socket, resolving identities against `world`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from hearth.config import ServiceConfig, build_options
from hearth.jwt import Signer, mint_service_jwt
from hearth.keys import KeyType
from keyserver.app import OPTIONS, create_app
from tests.servers import bound_socket, serve_app
from tests.world import Identity, World


@dataclass
class Keyserver:
    url: str
    did: str  # the service DID: the `aud` of every token
    http: httpx.AsyncClient
    data_dir: Path

    def auth(self, ident: Identity, lxm: str, **kw: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {ident.jwt(self.did, lxm, **kw)}"}

    async def public(self, did: str) -> httpx.Response:
        return await self.http.get("/xrpc/chat.hearth.v1.key.public", params={"did": did})

    async def private(self, ident: Identity, **params: str) -> httpx.Response:
        headers = self.auth(ident, "chat.hearth.v1.key.private")
        return await self.http.get(
            "/xrpc/chat.hearth.v1.key.private", headers=headers, params=params
        )


@dataclass
class KeyIdentity:
    """A did:key identity: it mints its own EdDSA tokens, no PDS involved."""

    signer: Signer

    @property
    def did(self) -> str:
        return self.signer.did_key

    def jwt(self, aud: str, lxm: str | None, ttl: int = 60, **kw: Any) -> str:
        return mint_service_jwt(self.signer, iss=self.did, aud=aud, lxm=lxm, ttl=ttl, **kw)

    @classmethod
    def generate(cls) -> KeyIdentity:
        return cls(Signer.generate(KeyType.ED25519))


@contextlib.asynccontextmanager
async def running_keyserver(
    world: World, data_dir: Path, env: dict[str, str] | None = None, **settings: Any
) -> AsyncIterator[Keyserver]:
    """Serve a keyserver on port 0 until the block ends. `env` holds
    HEARTH_KEYSERVER_* option variables, read exactly as `hearth keyserver` reads them."""
    sock = bound_socket()
    port = sock.getsockname()[1]
    config = ServiceConfig(
        "keyserver",
        world.settings(port=port, data_dir=data_dir, **settings),
        build_options(None, "keyserver", OPTIONS, env or {}),
    )
    async with serve_app(create_app(config), sock) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            did = (await http.get("/.well-known/did.json")).json()["id"]
            yield Keyserver(url, did, http, data_dir)


@pytest.fixture
async def keyserver(world: World, tmp_path: Path) -> AsyncIterator[Keyserver]:
    async with running_keyserver(world, tmp_path / "data") as ks:
        yield ks
