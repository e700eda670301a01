"""The syncserver service: settings, storage, hub, WebSocket and XRPC routes wired together.

Storage is opened when the server starts and closed when it stops; every
storage call runs on one worker thread so a durable commit never blocks the
event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from hearth.auth import (
    AUTH_OPTIONS,
    AuthBudget,
    AuthError,
    ServiceAuthVerifier,
    auth_limits_from_config,
    bearer_token,
)
from hearth.config import Option, ServiceConfig, parse_bool
from hearth.http import (
    EXCEPTION_HANDLERS,
    AccessLogMiddleware,
    XrpcError,
    auth_refusal,
    common_routes,
    read_json_body,
    require_auth,
)
from hearth.identity import IdentitySyntaxError, parse_did, web_did_for_url
from hearth.service import Service
from hearth.storage import StorageUnavailable, storage_status
from hearth.types import Did, DocumentId
from resolver import Resolver
from syncserver.directory import DIRECTORY_OPTIONS, DirectoryEndpoints
from syncserver.enforcement import (
    Bindings,
    SpaceAccessPolicy,
    SpaceAuthorship,
    SpaceEnforcement,
)
from syncserver.hub import SyncHub
from syncserver.messages import MessageError, parse_document_id
from syncserver.metrics import SyncMetrics
from syncserver.outgoing import OutgoingBudget
from syncserver.spaces import SPACE_OPTIONS, SpaceEndpoints, parse_space
from syncserver.storage import Access, MemoryStorage, SqliteStorage, Storage
from syncserver.tokens import looks_like_jwt, new_token, token_hash
from syncserver.transport import serve_socket
from syncserver.wsprotocol import protocol_class

T = TypeVar("T")
log = logging.getLogger("hearth.syncserver")

NSID = "chat.hearth.v1.sync"
LXM_TOKEN = f"{NSID}.token"
LXM_REVOKE = f"{NSID}.revokeToken"
LXM_SET_ACCESS = f"{NSID}.setAccess"
LXM_GET_ACCESS = f"{NSID}.getAccess"
LXM_EXPORT = f"{NSID}.export"
LXM_BIND_DOCUMENT = "chat.hearth.v1.space.bindDocument"
MAX_DIDS_PER_LIST = 1000
MAX_JSON_BODY = 1 << 20  # setAccess bodies
MAX_REVOKE_BODY = 4096  # an unauthenticated revokeToken body: {"token": ...}
TOKEN_SCOPE_KEY = "hearth.sync_token"

OPTIONS = (
    Option(
        "max_message_size",
        int,
        64 * 1024 * 1024,
        "largest WebSocket message accepted, bytes (larger ones close the socket with 1009);"
        " a sync message is processed on the event loop, ~0.5 s per MB",
    ),
    Option(
        "max_unjoined_message_size",
        int,
        64 * 1024,
        "largest WebSocket message accepted before the peer's join, bytes (larger: 1009)",
    ),
    Option(
        "max_queued_changes",
        int,
        1000,
        "changes per document that may wait in memory for missing dependencies",
    ),
    Option(
        "max_queued_bytes",
        int,
        16 * 1024 * 1024,
        "bytes of changes per document that may wait in memory for missing dependencies",
    ),
    Option(
        "max_connections",
        int,
        10_000,
        "simultaneous WebSocket connections; beyond, the upgrade is refused with 503",
    ),
    Option(
        "max_pending_requests",
        int,
        50_000,
        "requests for absent or unreadable documents remembered (to sync once the"
        " document appears or is shared), all peers together; ~0.4 KB each",
    ),
    Option(
        "max_pending_requests_per_peer",
        int,
        1024,
        "requests for absent or unreadable documents remembered per connection",
    ),
    Option(
        "max_sessions_per_connection",
        int,
        1024,
        "documents one connection may sync at once (each session keeps its document"
        " loaded until the connection leaves); beyond, a sync for another document"
        " is answered `error`; 0: no cap",
    ),
    Option("token_ttl", int, 24 * 3600, "session token lifetime, seconds"),
    Option(
        "max_tokens_per_did",
        int,
        32,
        "live session tokens kept per DID; a new one evicts the oldest beyond",
    ),
    Option("max_cached_documents", int, 1000, "documents kept in memory when no peer syncs them"),
    Option(
        "send_queue_bytes",
        int,
        32 * 1024 * 1024,
        "outgoing bytes held per connection (queue and socket buffer) beyond the biggest"
        " message it is being sent; a peer that reads slower is closed with 1008",
    ),
    Option(
        "send_total_bytes",
        int,
        256 * 1024 * 1024,
        "outgoing bytes held for all connections together; beyond, the slowest readers"
        " are closed first with 1013",
    ),
    Option("memory_storage", parse_bool, False, "keep everything in memory (tests, throwaway)"),
    Option(
        "storage_busy_timeout",
        float,
        5.0,
        "seconds a storage call waits for a lock held by another process before failing (503)",
    ),
    Option(
        "storage_probe_interval",
        float,
        5.0,
        "seconds between checks, with or without traffic, that the document store can"
        " be written (a lock held by another process shows in /xrpc/_health); 0: off",
    ),
    *SPACE_OPTIONS,
    *DIRECTORY_OPTIONS,
    *AUTH_OPTIONS,
)


@dataclass
class _State:
    storage: Storage
    hub: SyncHub
    metrics: SyncMetrics
    verifier: ServiceAuthVerifier
    run: Callable[[Callable[[], Any]], Any]
    outgoing: OutgoingBudget
    enforcement: SpaceEnforcement


def _did_list(value: object, name: str) -> frozenset[Did]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or len(value) > MAX_DIDS_PER_LIST:
        raise XrpcError(400, "InvalidRequest", f"{name} must be a list of DIDs")
    out = set()
    for item in value:
        try:
            out.add(parse_did(item))
        except IdentitySyntaxError as e:
            raise XrpcError(400, "InvalidRequest", f"{name}: {e}") from e
    return frozenset(out)


def _document_id(value: object) -> DocumentId:
    try:
        return parse_document_id(value)
    except MessageError as e:
        raise XrpcError(400, "InvalidRequest", f"documentId: {e}") from e


def access_json(document_id: DocumentId, access: Access) -> dict[str, Any]:
    return {
        "documentId": document_id,
        "owner": access.owner,
        "public": access.public,
        "readers": sorted(access.readers),
        "writers": sorted(access.writers),
    }


async def probe_storage(
    storage: Storage, run: Callable[[Callable[[], None]], Any], interval: float
) -> None:
    """Every `interval` seconds, check on the storage worker that the store can be
    written now (`Storage.check`: takes the write lock, waiting at most 0.1 s), so
    a lock held by another process shows in `health` even while no peer writes,
    and its end too. Without it, health probes only once a call has failed."""
    while True:
        await asyncio.sleep(interval)
        try:
            await run(storage.check)
        except StorageUnavailable:
            pass  # recorded in storage.health
        except Exception:
            log.exception("storage probe failed")


def create_app(config: ServiceConfig) -> Starlette:
    settings = config.settings
    service_did = web_did_for_url(settings.url)
    install_log_redaction()
    registry = CollectorRegistry()
    holder: dict[str, _State] = {}

    def state() -> _State:
        return holder["state"]

    async def run(st: _State, fn: Callable[[], T]) -> T:
        result: T = await st.run(fn)
        return result

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        storage: Storage
        storage_in_memory = config.get_bool("memory_storage")
        if storage_in_memory:
            storage = MemoryStorage()
            where = "memory (nothing survives a restart)"
        else:
            path = config.service_dir / "syncserver.sqlite3"
            storage = SqliteStorage(path, busy_timeout=config.get_float("storage_busy_timeout"))
            where = str(path)
        stats = storage.stats()
        log.info(
            "documents in %s (%d documents, %d changes), storageId %s",
            where,
            stats.documents,
            stats.changes,
            storage.storage_id(),
        )
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="syncserver-storage")
        loop = asyncio.get_running_loop()

        def run_in_worker(fn: Callable[[], Any]) -> Any:
            return loop.run_in_executor(executor, fn)

        metrics = SyncMetrics(registry, storage.stats)
        bindings = Bindings()
        hub = SyncHub(
            storage,
            metrics,
            peer_id=f"hearth-syncserver-{storage.storage_id()}",
            run=run_in_worker,
            max_cached_documents=config.get_int("max_cached_documents"),
            max_inflated=config.get_int("max_message_size"),
            max_queued_changes=config.get_int("max_queued_changes"),
            max_queued_bytes=config.get_int("max_queued_bytes"),
            max_pending_requests=config.get_int("max_pending_requests"),
            max_pending_requests_per_peer=config.get_int("max_pending_requests_per_peer"),
            max_sessions_per_connection=config.get_int("max_sessions_per_connection"),
            access_policy=SpaceAccessPolicy(bindings),
            authorship=SpaceAuthorship(bindings),
        )
        enforcement = SpaceEnforcement(bindings, storage, hub, run_in_worker)
        resolver = Resolver.from_settings(settings)
        verifier = ServiceAuthVerifier(
            service_did, resolver.signing_key, budget=AuthBudget(auth_limits_from_config(config))
        )
        outgoing = OutgoingBudget(config.get_int("send_total_bytes"))
        holder["state"] = _State(
            storage, hub, metrics, verifier, run_in_worker, outgoing, enforcement
        )
        log.info("space authority logs in %s", spaces.open(run_in_worker, storage_in_memory))
        bound = await enforcement.start(spaces.service)
        log.info("%d documents bound to spaces", bound)
        listed = await directory.start(spaces.service, run_in_worker)
        log.info("%d spaces listed in the directory", listed)
        probe_interval = config.get_float("storage_probe_interval")
        probing = (
            asyncio.create_task(probe_storage(storage, run_in_worker, probe_interval))
            if probe_interval > 0 and not storage_in_memory
            else None
        )
        try:
            yield
        finally:
            if probing is not None:
                probing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await probing
            for conn in list(hub.connections.values()):
                conn.peer.close(1001, "server shutting down")
            await resolver.aclose()
            await enforcement.close()
            await directory.close()
            executor.shutdown(wait=True)
            storage.close()
            await spaces.close()
            holder.pop("state", None)

    connections = 0
    max_connections = config.get_int("max_connections")

    async def websocket(ws: WebSocket) -> None:
        nonlocal connections
        st = state()
        if connections >= max_connections:
            st.metrics.refused.labels("server_full").inc()
            await ws.send_denial_response(
                Response("too many connections; retry later", 503, media_type="text/plain")
            )
            return
        connections += 1
        try:
            await serve_connection(ws, st)
        finally:
            connections -= 1

    async def serve_connection(ws: WebSocket, st: _State) -> None:
        did: Did | None = None
        token = ws.scope.get(TOKEN_SCOPE_KEY)
        if token:
            digest = token_hash(token)
            did = await run(st, lambda: st.storage.lookup_token(digest, time.time()))
            if did is None:
                st.metrics.refused.labels("bad_token").inc()
                await ws.accept()
                await ws.close(4001, "invalid, expired or revoked token")
                return
        await ws.accept()
        await serve_socket(
            ws,
            st.hub,
            st.metrics,
            did,
            config.get_int("send_queue_bytes"),
            config.get_int("max_unjoined_message_size"),
            st.outgoing,
        )

    async def caller(request: Request, lxm: str, *, optional: bool = False) -> Did | None:
        """The DID behind the request's bearer JWT or session token."""
        header = request.headers.get("authorization")
        if not header and optional:
            return None
        st = state()
        try:
            token = bearer_token(header)
        except AuthError as e:
            raise auth_refusal(e) from e
        if looks_like_jwt(token):
            return (await require_auth(request, st.verifier, lxm)).iss
        digest = token_hash(token)
        did = await run(st, lambda: st.storage.lookup_token(digest, time.time()))
        if did is None:
            raise XrpcError(401, "InvalidToken", "session token invalid, expired or revoked")
        return did

    async def json_body(request: Request) -> Mapping[str, Any]:
        # Capped while read (two lists of MAX_DIDS_PER_LIST DIDs fit), depth-checked.
        return await read_json_body(request, MAX_JSON_BODY)

    async def get_token(request: Request) -> Response:
        st = state()
        header = request.headers.get("authorization") or ""
        if not looks_like_jwt(header.partition(" ")[2].strip()):
            raise XrpcError(401, "AuthenticationRequired", "a service-auth JWT is required")
        did = await caller(request, LXM_TOKEN)
        assert did is not None
        token = new_token()
        ttl = config.get_int("token_ttl")
        now = time.time()
        expires = now + ttl
        digest = token_hash(token)
        keep = config.get_int("max_tokens_per_did")
        # Bounded per DID, so one identity within its auth budget cannot grow the
        # database without end; the newest token always works.
        await run(st, lambda: st.storage.add_token(digest, did, expires, now=now, keep=keep))
        return JSONResponse(
            {
                "token": token,
                "did": did,
                "expiresAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires)),
                "expiresIn": ttl,
            },
            headers={"cache-control": "no-store"},
        )

    async def revoke_token(request: Request) -> Response:
        """Revoke one token (by presenting it) or, with a JWT, every token of the caller."""
        st = state()
        if request.headers.get("authorization"):
            # Authenticated first, and the body (ignored) never read.
            authenticated = await caller(request, LXM_REVOKE)
            assert authenticated is not None
            did = authenticated
            count = await run(st, lambda: st.storage.revoke_tokens(authenticated))
            st.hub.close_peers_of(did, "session token revoked")
            return JSONResponse({"revoked": count})
        # The body is the credential: small enough for one token.
        token = (await read_json_body(request, MAX_REVOKE_BODY)).get("token")
        if isinstance(token, str) and token:
            digest = token_hash(token)
            revoked = await run(st, lambda: st.storage.revoke_token(digest))
            if revoked is None:
                raise XrpcError(404, "NotFound", "no such token")
            did, count = revoked, 1
        else:
            raise XrpcError(400, "InvalidRequest", "give a token, or authenticate to revoke all")
        st.hub.close_peers_of(did, "session token revoked")
        return JSONResponse({"revoked": count})

    async def owned_access(did: Did | None, document_id: DocumentId) -> Access:
        """The document's rules, if `did` (authenticated) owns it; else XrpcError."""
        st = state()
        access = await run(st, lambda: st.storage.get_access(document_id))
        if access is None:
            raise XrpcError(404, "DocumentNotFound", "no such document")
        if access.owner != did:
            raise XrpcError(403, "Forbidden", "only the document's owner may do this")
        return access

    async def set_access(request: Request) -> Response:
        st = state()
        # Authenticated before the body is read: an anonymous body costs nothing.
        did = await caller(request, LXM_SET_ACCESS)
        body = await json_body(request)
        document_id = _document_id(body.get("documentId"))
        public = body.get("public", False)
        if not isinstance(public, bool):
            raise XrpcError(400, "InvalidRequest", "public must be a boolean")
        readers = _did_list(body.get("readers"), "readers")
        writers = _did_list(body.get("writers"), "writers")
        current = await owned_access(did, document_id)
        access = Access(current.owner, public, readers, writers)
        await run(st, lambda: st.storage.set_access(document_id, access))
        await st.hub.access_changed(document_id, access)
        return JSONResponse(access_json(document_id, access))

    async def bind_document(request: Request) -> Response:
        """Bind a document the caller owns to a space they are a member of
        (docs/spaces.md "Enforcement at the syncserver")."""
        st = state()
        did = await caller(request, LXM_BIND_DOCUMENT)
        assert did is not None
        body = await json_body(request)
        document_id = _document_id(body.get("documentId"))
        space = parse_space(body.get("space"))
        await st.enforcement.bind(did, document_id, space)
        return JSONResponse({"documentId": document_id, "space": space})

    async def get_access(request: Request) -> Response:
        document_id = _document_id(request.query_params.get("documentId"))
        access = await owned_access(await caller(request, LXM_GET_ACCESS), document_id)
        answer = access_json(document_id, access)
        space = state().enforcement.bindings.space_of(document_id)
        if space is not None:
            answer["space"] = space  # the space's state decides, not the lists
        return JSONResponse(answer)

    async def export(request: Request) -> Response:
        st = state()
        document_id = _document_id(request.query_params.get("documentId"))
        did = await caller(request, LXM_EXPORT, optional=True)
        access = await run(st, lambda: st.storage.get_access(document_id))
        if access is None or not st.hub.access_policy.may_read(did, document_id, access):
            # The same answer for "absent" and "not yours": ids are never confirmed.
            raise XrpcError(404, "DocumentNotFound", "no such document, or you may not read it")
        blob = await st.hub.export(document_id)
        return Response(blob, media_type="application/octet-stream")

    async def health() -> dict[str, Any]:
        st = holder.get("state")
        if st is None:
            return {"status": "starting"}
        if st.storage.health.error is not None:  # has the cause gone meanwhile?
            with contextlib.suppress(StorageUnavailable):
                await run(st, st.storage.check)
        storage = storage_status([st.storage.health, *filter(None, [spaces.health])])
        stats = st.storage.stats()
        return {
            "status": "ok" if storage == "ok" else "error",
            "storage": storage,
            "peerId": st.hub.peer_id,
            "storageId": st.hub.storage_id,
            "peers": len(st.hub.connections),
            "outgoingBytes": st.outgoing.total,
            "pendingRequests": len(st.hub.waiting) + len(st.hub.creating),
            "documents": stats.documents,
            "changes": stats.changes,
        }

    async def authenticate(request: Request, lxm: str, optional: bool) -> Did | None:
        return await caller(request, lxm, optional=optional)

    spaces = SpaceEndpoints(config, authenticate)
    directory = DirectoryEndpoints(config, authenticate)
    routes: list[BaseRoute] = [
        WebSocketRoute("/", websocket),
        WebSocketRoute("/sync", websocket),
        Route(f"/xrpc/{LXM_TOKEN}", get_token, methods=["GET"]),
        Route(f"/xrpc/{LXM_REVOKE}", revoke_token, methods=["POST"]),
        Route(f"/xrpc/{LXM_SET_ACCESS}", set_access, methods=["POST"]),
        Route(f"/xrpc/{LXM_GET_ACCESS}", get_access, methods=["GET"]),
        Route(f"/xrpc/{LXM_BIND_DOCUMENT}", bind_document, methods=["POST"]),
        Route(f"/xrpc/{LXM_EXPORT}", export, methods=["GET"]),
        *spaces.routes,
        *directory.routes,
        *common_routes(
            service_did,
            settings.url,
            [("hearth_sync", "HearthSyncServer")],
            registry,
            health,
        ),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[
            Middleware(TokenFromQueryMiddleware),
            Middleware(AccessLogMiddleware, service="syncserver"),
        ],
    )


_TOKEN_IN_TEXT = re.compile(r"([?&]token=)[^&\s]*")


class RedactTokens(logging.Filter):
    """Blanks `token=` query parameters in log records (uvicorn and websockets log
    request lines at debug level, before any application code runs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if "token=" in text:
            record.msg = _TOKEN_IN_TEXT.sub(r"\1<redacted>", text)
            record.args = ()
        return True


def install_log_redaction() -> None:
    for name in ("uvicorn.error", "uvicorn.access", "uvicorn"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())


class TokenFromQueryMiddleware:
    """Moves `?token=` of a WebSocket URL out of the query string before anything logs it.

    uvicorn logs WebSocket handshakes with their query string; emptying it in the
    (shared) scope keeps session tokens out of every log at every level.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope.get("query_string"):
            raw = scope["query_string"].decode("latin-1")
            params = urllib.parse.parse_qs(raw)
            tokens = params.pop("token", [])
            if tokens:
                scope[TOKEN_SCOPE_KEY] = tokens[0]
            scope["query_string"] = urllib.parse.urlencode(params, doseq=True).encode()
        await self.app(scope, receive, send)


def uvicorn_options(config: ServiceConfig) -> Mapping[str, Any]:
    options: dict[str, Any] = {
        "ws_max_size": config.get_int("max_message_size"),
        "ws_ping_interval": 20.0,
        "ws_ping_timeout": 20.0,
    }
    ws = protocol_class()
    if ws is not None:
        # Lets the outgoing budget see and drop what the socket buffers.
        options["ws"] = ws
    return options


SERVICE = Service(
    name="syncserver",
    default_port=8704,
    summary="always-on automerge-repo peer: durable document storage, per-document access",
    create_app=create_app,
    options=OPTIONS,
    uvicorn_options=uvicorn_options,
)
