"""An atproto PDS on loopback, as far as Hearth's sign-in uses one.

`FakePds` answers `com.atproto.server.createSession` (handle or DID + app
password), `refreshSession` and `getServiceAuth`, the last minting real
service-auth JWTs (ES256 / ES256K) signed with the account's `#atproto` key
from the loopback `World`, exactly what a real PDS hands a client. It sends
CORS headers, as PDSes do, because the browser calls it directly. Tests can
expire its access tokens or end an account's sessions.

`running_outside_world()` runs a `World` and a `FakePds` on a background event
loop, for synchronous (Playwright) tests.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hearth.keys import KeyType
from tests.servers import bound_socket, serve_app
from tests.timing import MS
from tests.world import Identity, World, running_world

ACCESS_TTL = 2 * 3600
MAX_SERVICE_TTL = 3600  # real PDSes refuse service tokens valid for longer
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "authorization, content-type, atproto-proxy",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
}

T = TypeVar("T")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _error(status: int, error: str, message: str) -> Response:
    return JSONResponse({"error": error, "message": message}, status, headers=CORS)


@dataclass
class Account:
    ident: Identity
    password: str


@dataclass
class FakePds:
    url: str = ""
    accounts: dict[str, Account] = field(default_factory=dict)  # by DID
    requests: Counter[str] = field(default_factory=Counter)  # XRPC method -> count
    service_tokens: list[tuple[str, str, str]] = field(default_factory=list)  # (iss, aud, lxm)
    _secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    _access: dict[str, str] = field(default_factory=dict)  # jti -> DID
    _refresh: dict[str, str] = field(default_factory=dict)
    _expired: set[str] = field(default_factory=set)

    def add(self, ident: Identity, password: str) -> None:
        """Host `ident` here: its DID document's #atproto_pds now names this PDS."""
        self.accounts[ident.did] = Account(ident, password)
        for service in ident.doc["service"]:
            if service["id"] == "#atproto_pds":
                service["serviceEndpoint"] = self.url

    def expire_access_tokens(self) -> None:
        """Every access token issued so far is expired from now on (refresh tokens stay good)."""
        self._expired.update(self._access)

    def revoke_sessions(self, did: str) -> None:
        """End every session of `did`, as revoking its app password does: its access
        and refresh tokens are refused (401 InvalidToken) from now on."""
        for table in (self._access, self._refresh):
            for jti in [jti for jti, owner in table.items() if owner == did]:
                del table[jti]

    # -- tokens ---------------------------------------------------------------

    def _token(self, did: str, scope: str, ttl: int) -> tuple[str, str]:
        jti = secrets.token_hex(16)
        now = int(time.time())
        header = _b64(json.dumps({"alg": "HS256", "typ": "at+jwt"}).encode())
        payload = {"scope": scope, "sub": did, "iat": now, "exp": now + ttl, "jti": jti}
        body = header + "." + _b64(json.dumps(payload).encode())
        mac = hmac.new(self._secret, body.encode(), hashlib.sha256).digest()
        return body + "." + _b64(mac), jti

    def _session(self, account: Account) -> dict[str, Any]:
        did = account.ident.did
        access, access_jti = self._token(did, "com.atproto.appPass", ACCESS_TTL)
        refresh, refresh_jti = self._token(did, "com.atproto.refresh", 90 * 24 * 3600)
        self._access[access_jti] = did
        self._refresh[refresh_jti] = did
        return {
            "did": did,
            "handle": account.ident.handle,
            "accessJwt": access,
            "refreshJwt": refresh,
            "active": True,
        }

    def _bearer(self, request: Request, table: dict[str, str]) -> tuple[str | None, str]:
        """(DID, jti) of a valid bearer token from `table`; (None, reason) otherwise."""
        header = request.headers.get("authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else ""
        parts = token.split(".")
        if len(parts) != 3:
            return None, "AuthenticationRequired"
        mac = hmac.new(self._secret, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(_b64(mac), parts[2]):
            return None, "InvalidToken"
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        jti = json.loads(base64.urlsafe_b64decode(padded))["jti"]
        if jti in self._expired:
            return None, "ExpiredToken"
        did = table.get(jti)
        return (did, jti) if did else (None, "InvalidToken")

    # -- XRPC -----------------------------------------------------------------

    def app(self) -> Starlette:
        async def xrpc(request: Request) -> Response:
            if request.method == "OPTIONS":
                return Response(status_code=204, headers=CORS)
            method = request.path_params["method"]
            self.requests[method] += 1
            if method == "com.atproto.server.createSession" and request.method == "POST":
                return await create_session(request)
            if method == "com.atproto.server.refreshSession" and request.method == "POST":
                did, jti = self._bearer(request, self._refresh)
                if did is None:
                    return _error(400 if jti == "ExpiredToken" else 401, jti, "bad refresh token")
                del self._refresh[jti]  # refresh tokens are single-use
                return JSONResponse(self._session(self.accounts[did]), headers=CORS)
            if method == "com.atproto.server.getServiceAuth" and request.method == "GET":
                return service_auth(request)
            return _error(501, "MethodNotImplemented", f"{method} is not implemented here")

        async def create_session(request: Request) -> Response:
            try:
                body = json.loads(await request.body())
                identifier = str(body["identifier"]).lower()
                password = str(body["password"])
            except (ValueError, KeyError, TypeError):
                return _error(400, "InvalidRequest", "identifier and password are required")
            for account in self.accounts.values():
                if identifier in (account.ident.did, account.ident.handle):
                    if hmac.compare_digest(account.password, password):
                        return JSONResponse(self._session(account), headers=CORS)
                    break
            return _error(401, "AuthenticationRequired", "Invalid identifier or password")

        def service_auth(request: Request) -> Response:
            did, reason = self._bearer(request, self._access)
            if did is None:
                return _error(400 if reason == "ExpiredToken" else 401, reason, "bad access token")
            aud = request.query_params.get("aud", "")
            lxm = request.query_params.get("lxm") or None
            try:
                ttl = int(request.query_params.get("exp", "")) - int(time.time())
            except ValueError:
                ttl = 60
            if not aud.startswith("did:"):
                return _error(400, "InvalidRequest", "aud must be a DID")
            if not 0 < ttl <= MAX_SERVICE_TTL:
                return _error(400, "BadExpiration", "expiration out of range")
            ident = self.accounts[did].ident
            self.service_tokens.append((did, aud, lxm or ""))
            return JSONResponse({"token": ident.jwt(aud, lxm, ttl=ttl)}, headers=CORS)

        return Starlette(routes=[Route("/xrpc/{method}", xrpc, methods=["GET", "POST", "OPTIONS"])])


class OutsideWorld:
    """A World and a FakePds served from a background event loop."""

    def __init__(self) -> None:
        self.world: World
        self.pds = FakePds()
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the fixtures' loop (their state is only touched there)."""

        async def run() -> T:
            return fn()

        return self.run(run())

    def run(self, coro: Awaitable[T]) -> T:
        async def wrap() -> T:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrap(), self._loop).result(30_000 * MS)

    def new_account(self, password: str, key_type: KeyType = KeyType.SECP256K1) -> Identity:
        """A did:plc with a handle (published over DNS) hosted on the fake PDS."""

        def make() -> Identity:
            ident = self.world.new_plc_identity(key_type)
            self.pds.add(ident, password)
            return ident

        return self.call(make)


@contextlib.contextmanager
def running_outside_world() -> Iterator[OutsideWorld]:
    outside = OutsideWorld()
    ready = threading.Event()
    stop = asyncio.Event()
    failure: list[BaseException] = []

    async def main() -> None:
        try:
            async with running_world() as world:
                outside.world = world
                async with serve_app(outside.pds.app(), bound_socket()) as url:
                    outside.pds.url = url
                    ready.set()
                    await stop.wait()
        except BaseException as e:  # reported to the test thread
            failure.append(e)
            ready.set()

    def thread() -> None:
        asyncio.set_event_loop(outside._loop)
        outside._loop.run_until_complete(main())
        outside._loop.close()

    outside._thread = threading.Thread(target=thread, daemon=True)
    outside._thread.start()
    if not ready.wait(30_000 * MS) or failure:
        raise AssertionError(f"the outside world did not start: {failure}")
    try:
        yield outside
    finally:
        outside._loop.call_soon_threadsafe(stop.set)
        outside._thread.join(30_000 * MS)
