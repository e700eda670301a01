"""asyncio glue: the router's WebSocket endpoint as a uvicorn `ws` protocol class.

uvicorn parses HTTP and hands every `Upgrade: websocket` request to
`RouterProtocol` (configured through `Service.uvicorn_options`), which does the
opening handshake, authentication and framing itself and feeds whole messages
to `router.core.Router`. No ASGI task runs per connection: one connection is
one protocol object, a parser and the core's `Connection`.

`RouterServer` is the process-wide state (core, token store, verifiers,
keepalive sweeper); the app's lifespan creates it and passes it to the protocol
through the lifespan state under `STATE_KEY`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import time
from typing import Any

from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from hearth.auth import AuthBudget, AuthError, ServiceAuthVerifier
from hearth.identity import IdentitySyntaxError, parse_did
from hearth.keys import PublicKey
from hearth.types import Did
from router.core import Connection, Router
from router.limits import Limits
from router.messages import HEARTH_SUBPROTOCOL
from router.tokens import TokenStore
from router.websocket import (
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL,
    CLOSE_POLICY,
    CLOSE_TRY_AGAIN,
    EV_BINARY,
    EV_CLOSE,
    EV_OVERSIZE,
    EV_PING,
    EV_TEXT,
    OP_BINARY,
    OP_PING,
    OP_PONG,
    FrameParser,
    HandshakeError,
    ProtocolError,
    accept_response,
    check_upgrade,
    encode_close,
    encode_frame_header,
    offered_subprotocols,
    parse_close,
    parse_request_head,
    reject_response,
)

log = logging.getLogger("hearth.router")

STATE_KEY = "hearth_router"
CONNECT_LXM = "chat.hearth.v1.router.connect"
CONNECT_PREFIX = "/connect/as/"

_HANDSHAKE, _AUTHENTICATING, _OPEN, _CLOSED = range(4)


async def _no_resolution(_did: Did, _fresh: bool) -> PublicKey | None:
    return None  # self-signed connect tokens are for did:key, which needs no lookup


class RouterServer:
    """Process-wide router state shared by every `RouterProtocol`."""

    def __init__(
        self,
        did: str,
        limits: Limits,
        *,
        info: dict[str, Any] | None = None,
        token_ttl: float = 30.0,
        auth_budget: AuthBudget | None = None,
    ) -> None:
        self.did = did
        self.limits = limits
        self.router = Router(limits, info=info)
        self.tokens = TokenStore(ttl=token_ttl)
        self.connect_verifier = ServiceAuthVerifier(did, _no_resolution, budget=auth_budget)
        self.protocols: set[RouterProtocol] = set()
        self.refused: dict[str, int] = {}  # handshake refusals by reason
        self.slow_consumers = 0
        # Unfinished messages: bytes held for all connections, and the
        # connections holding one, oldest message first (insertion order).
        self.partial_bytes = 0
        self._partials: dict[RouterProtocol, float] = {}
        self._dirty: list[RouterProtocol] = []
        self._flush_scheduled = False
        self._batch_depth = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._proxy_headers: ProxyHeadersMiddleware | None = None

    def start(self) -> None:
        """Start the keepalive sweeper; call from the running loop."""
        self._loop = asyncio.get_running_loop()
        limits = self.limits
        if limits.ping_interval > 0 or limits.idle_timeout > 0 or limits.partial_timeout > 0:
            self._sweeper = asyncio.create_task(self._sweep())

    async def aclose(self) -> None:
        """Stop the sweeper and close every connection with 1001."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        for proto in list(self.protocols):
            proto.shutdown()

    @property
    def partial_count(self) -> int:
        """Connections holding an unfinished message."""
        return len(self._partials)

    def hold_partial(self, proto: RouterProtocol, held: int, progressed: bool, now: float) -> None:
        """`proto` now holds `held` bytes of an unfinished message; enforce the budget.

        `progressed`: a message completed since the last call, so what is held
        (if anything) belongs to a new one and its clock starts over. Over
        `max_partial_bytes`, connections are closed oldest unfinished message
        first (1013) until the total fits; this may close `proto` itself.
        """
        old = proto.partial
        proto.partial = held
        self.partial_bytes += held - old
        partials = self._partials
        if not held:
            partials.pop(proto, None)
        elif not old or progressed:
            partials.pop(proto, None)
            partials[proto] = now
        if held <= old:
            return  # giving bytes back never closes anyone
        budget = self.limits.max_partial_bytes
        while self.partial_bytes > budget and partials:
            oldest = next(iter(partials))
            log.info("closing %s: unfinished frames over max_partial_bytes", oldest.did)
            oldest.close(
                CLOSE_TRY_AGAIN, "server busy: too many unfinished frames", "partial_budget"
            )
            oldest.release_partial()  # also when it was closing already

    def expire_partials(self, now: float) -> None:
        """Close connections whose unfinished message is older than `partial_timeout`."""
        timeout = self.limits.partial_timeout
        if timeout <= 0:
            return
        partials = self._partials
        while partials:
            proto, since = next(iter(partials.items()))
            if now - since <= timeout:
                return
            log.info("closing %s: unfinished frame older than partial_timeout", proto.did)
            proto.close(CLOSE_POLICY, "frame not finished in time", "partial_timeout")
            proto.release_partial()

    def refuse(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1

    async def client_address(
        self, config: Any, peer: str | None, forwarded_for: list[str]
    ) -> str | None:
        """The client's address exactly as uvicorn gives it to the HTTP routes.

        `X-Forwarded-For` counts only when uvicorn's `proxy_headers` is on and
        the peer is one of its `forwarded_allow_ips` (loopback by default), so
        the token budget of a did:key connect behind a reverse proxy is its
        client's, as on the token endpoints.
        """
        if peer is None or not forwarded_for or not getattr(config, "proxy_headers", False):
            return peer
        if self._proxy_headers is None:
            self._proxy_headers = ProxyHeadersMiddleware(_keep_scope, config.forwarded_allow_ips)
        scope: dict[str, Any] = {
            "type": "websocket",
            "client": (peer, 0),
            "headers": [(b"x-forwarded-for", v.encode("latin-1")) for v in forwarded_for],
        }
        await self._proxy_headers(scope, _no_receive, _no_send)  # type: ignore[arg-type]
        client = scope.get("client")
        return str(client[0]) if client else peer

    def schedule_flush(self, proto: RouterProtocol) -> None:
        # Writes are coalesced per destination: inside a batch (the frames of
        # one socket read) they are flushed when the batch ends, so k frames to
        # one destination cost one write() system call without waiting for the
        # next event-loop iteration; other writes flush on the next iteration.
        self._dirty.append(proto)
        if not self._batch_depth and not self._flush_scheduled:
            self._flush_scheduled = True
            assert self._loop is not None
            self._loop.call_soon(self._flush_all)

    def begin_batch(self) -> None:
        self._batch_depth += 1

    def end_batch(self) -> None:
        """Flush everything written since `begin_batch`; must pair with it."""
        self._batch_depth -= 1
        if not self._batch_depth and self._dirty:
            self._flush_all()

    def _flush_all(self) -> None:
        self._flush_scheduled = False
        dirty = self._dirty
        self._dirty = []
        for proto in dirty:
            try:
                proto.flush()
            except Exception:  # one broken connection must not stall the others
                log.exception("flushing a connection failed; dropping it")
                proto.abort()

    async def _sweep(self) -> None:
        limits = self.limits
        periods = [
            p
            for p in (limits.ping_interval, limits.idle_timeout / 2, limits.partial_timeout / 2)
            if p > 0
        ]
        period = min(periods)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            self.expire_partials(now)
            if limits.ping_interval > 0 or limits.idle_timeout > 0:
                for proto in list(self.protocols):
                    proto.keepalive(now)


class RouterProtocol(asyncio.Protocol):
    """One WebSocket connection, from the upgrade request to the close."""

    __slots__ = (
        "server",
        "server_state",
        "transport",
        "state",
        "parser",
        "conn",
        "out",
        "last_seen",
        "did",
        "config",
        "forwarded_for",
        "partial",
    )

    def __init__(
        self,
        config: Any = None,
        server_state: Any = None,
        app_state: dict[str, Any] | None = None,
        _loop: Any = None,
    ) -> None:
        server = (app_state or {}).get(STATE_KEY)
        self.server: RouterServer | None = server if isinstance(server, RouterServer) else None
        self.server_state = server_state
        self.config = config  # uvicorn's: its proxy-headers settings name the client
        self.forwarded_for: list[str] = []
        self.transport: asyncio.Transport | None = None
        self.state = _HANDSHAKE
        self.parser: FrameParser | None = None
        self.conn: Connection | None = None
        self.out: list[bytes] | None = None
        self.last_seen = 0.0
        self.did: Did | None = None
        self.partial = 0  # bytes of an unfinished message counted in the server's budget

    # ------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        # asyncio sets TCP_NODELAY only when the listening socket was created
        # with proto=IPPROTO_TCP, which uvicorn's is not: without it, Nagle's
        # algorithm holds small frames back for tens of milliseconds.
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.server_state is not None:
            self.server_state.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.state == _OPEN:
            self._frames(data)
        elif self.state == _HANDSHAKE:
            self._handshake(data)
        # While authenticating, a conforming client sends nothing; ignore otherwise.

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = _CLOSED
        server = self.server
        try:
            self.release_partial()
            if server is not None:
                server.protocols.discard(self)
                if self.conn is not None:
                    server.router.disconnect(self.conn, "lost" if exc else "closed")
        finally:
            if self.server_state is not None:
                self.server_state.connections.discard(self)
            self.conn = None
            self.parser = None
            self.out = None

    # uvicorn calls this on graceful shutdown.
    def shutdown(self) -> None:
        if self.state == _OPEN:
            self.close(CLOSE_GOING_AWAY, "server shutting down")
        elif self.transport is not None and self.state != _CLOSED:
            self.state = _CLOSED
            self.transport.close()

    # ------------------------------------------------------------ handshake

    def _reject(
        self, status: int, message: str, reason: str, *, retry_after: int | None = None
    ) -> None:
        assert self.transport is not None
        if self.server is not None:
            self.server.refuse(reason)
        # WARNING, so hearth.logs.RepeatFilter bounds a flood of them; the reason
        # (one of a fixed set) is part of the template, so each reason is bounded
        # on its own. hearth_router_handshakes_refused counts every one.
        log.warning(
            "refused connection (" + reason.replace("%", "%%") + "): %d %s", status, message
        )
        self.state = _CLOSED
        self.transport.write(reject_response(status, message, retry_after))
        self.transport.close()

    def _handshake(self, head: bytes) -> None:
        server = self.server
        if server is None:
            self._reject(503, "router not started", "not_started")
            return
        try:
            request = parse_request_head(head)
            path = request.target.split("?", 1)[0]
            if not path.startswith(CONNECT_PREFIX):
                raise HandshakeError(404, "no WebSocket endpoint here; use /connect/as/{did}")
            accept = check_upgrade(request)
        except HandshakeError as e:
            self._reject(e.status, e.message, "bad_request")
            return
        raw_did = path[len(CONNECT_PREFIX) :]
        if raw_did.endswith("/"):
            raw_did = raw_did[:-1]
        try:
            did = parse_did(raw_did)  # as written: Roomy never percent-decodes it
        except IdentitySyntaxError:
            self._reject(400, "the path must be /connect/as/{did} with a valid DID", "bad_did")
            return
        protocols = offered_subprotocols(request)
        if not 2 <= len(protocols) <= 8 or protocols[0] != "authorization":
            self._reject(403, "offer subprotocols 'authorization' and a token", "no_token")
            return
        token = protocols[1]
        hearth = HEARTH_SUBPROTOCOL in protocols[2:]  # other extras are ignored
        if not self._admit(did):
            return
        self.did = did
        self.forwarded_for = request.headers.get("x-forwarded-for", [])
        if token.count(".") == 2:
            self.state = _AUTHENTICATING
            task = asyncio.ensure_future(self._verify_jwt(did, token, accept, hearth))
            task.add_done_callback(_log_task_failure)
            return
        if not server.tokens.consume(token, did, time.monotonic()):
            self._reject(403, "invalid, expired or used router token", "bad_token")
            return
        self._open(did, accept, hearth)

    async def _verify_jwt(self, did: Did, token: str, accept: str, hearth: bool) -> None:
        server = self.server
        assert server is not None
        if not did.startswith("did:key:"):
            self._reject(403, "self-signed connect tokens are for did:key only", "bad_token")
            return
        verifier = server.connect_verifier
        try:
            client = await server.client_address(self.config, self._peer_host(), self.forwarded_for)
            verified = await verifier.check(token, lxm=CONNECT_LXM, client=client)
        except AuthError as e:
            if self.state != _AUTHENTICATING:
                return
            if e.retry_after is not None:
                # The token may be good: a retryable refusal, as for a full router.
                retry = max(1, math.ceil(e.retry_after))
                self._reject(
                    429, f"{e.reason}: retry in {retry} s", "auth_" + e.reason, retry_after=retry
                )
            else:
                self._reject(403, f"connect token refused: {e.reason}", "bad_jwt_" + e.reason)
            return
        if self.state != _AUTHENTICATING:
            return  # the client went away meanwhile; its token stays unused
        if verified.iss != did:
            self._reject(403, "connect token was issued by another DID", "bad_jwt_issuer")
            return
        if not self._admit(did):
            return
        verifier.commit(verified)  # no await since `check`: cannot fail
        self._open(did, accept, hearth)

    def _peer_host(self) -> str | None:
        """The address of the socket's peer (a reverse proxy's, behind one)."""
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return peer[0] if isinstance(peer, tuple) and peer else None

    def _admit(self, did: Did) -> bool:
        """Check the connection caps (whole router, then per DID); refuse if over."""
        server = self.server
        assert server is not None
        if server.router.full:
            self._reject(503, "router is at its connection limit; retry later", "router_full")
            return False
        if not server.router.can_connect(did):
            self._reject(429, "too many connections for this DID", "too_many_connections")
            return False
        return True

    def _open(self, did: Did, accept: str, hearth: bool) -> None:
        server = self.server
        transport = self.transport
        assert server is not None and transport is not None
        transport.write(accept_response(accept, "authorization"))
        self.state = _OPEN
        self.parser = FrameParser(server.limits.max_frame_bytes)
        self.last_seen = time.monotonic()
        server.protocols.add(self)
        try:
            self.conn = server.router.connect(did, self, hearth=hearth)
        except Exception:  # a bug: drop this connection, keep the router
            log.exception("opening a connection for %s failed", did)
            self.abort()

    # ------------------------------------------------------------ frames

    def _frames(self, data: bytes) -> None:
        parser = self.parser
        conn = self.conn
        server = self.server
        assert parser is not None and conn is not None and server is not None
        now = self.last_seen = time.monotonic()
        try:
            events = parser.feed(data)
        except ProtocolError as e:
            self.close(e.code, e.reason)
            return
        held = parser.buffered
        if held or self.partial:
            server.hold_partial(self, held, _completed_message(events), now)
            if self.state != _OPEN:
                return  # closed to keep within max_partial_bytes
        server.begin_batch()
        try:
            self._events(events, conn, server)
        finally:
            server.end_batch()

    def _events(
        self, events: list[tuple[int, bytes]], conn: Connection, server: RouterServer
    ) -> None:
        router = server.router
        for kind, payload in events:
            if kind == EV_BINARY or kind == EV_TEXT:
                try:
                    router.receive(conn, payload)
                except Exception:  # a handler bug: fail this connection, not the loop
                    log.exception("handling a frame from %s failed", conn.did)
                    self.close(CLOSE_INTERNAL, "internal error", "internal_error")
                    return
            elif kind == EV_PING:
                self._send_raw(encode_frame_header(OP_PONG, len(payload)) + payload)
            elif kind == EV_CLOSE:
                try:
                    code, _reason = parse_close(payload)
                except ProtocolError as e:
                    self.close(e.code, e.reason)
                    return
                self.close(1000 if code == 1005 else code, "", "client_close")
                return
            elif kind == EV_OVERSIZE:
                router.oversize(conn)
            if self.state != _OPEN:
                return

    # ------------------------------------------------------------ Peer (for the core)

    def write(self, frame: bytes) -> None:
        """Queue one Roomy frame as a binary message; flushed once per loop iteration."""
        if self.state != _OPEN:
            return
        out = self.out
        if out is None:
            self.out = [encode_frame_header(OP_BINARY, len(frame)), frame]
            assert self.server is not None
            self.server.schedule_flush(self)
        else:
            out.append(encode_frame_header(OP_BINARY, len(frame)))
            out.append(frame)

    def flush(self) -> None:
        out = self.out
        self.out = None
        if out is None or self.state != _OPEN:
            return
        transport = self.transport
        server = self.server
        assert transport is not None and server is not None
        if transport.is_closing():
            return  # connection_lost follows; writing now would only log warnings
        transport.write(b"".join(out))
        if transport.get_write_buffer_size() > server.limits.max_outgoing_bytes:
            # A slow consumer: drop it and everything queued for it, at once.
            server.slow_consumers += 1
            log.info("closing slow consumer %s (outgoing buffer over limit)", self.did)
            self.state = _CLOSED
            self.release_partial()
            if self.conn is not None:
                server.router.disconnect(self.conn, "slow_consumer")
            transport.abort()

    def release_partial(self) -> None:
        """Give this connection's unfinished message back to the budget and drop it."""
        if self.partial and self.server is not None:
            self.server.hold_partial(self, 0, False, 0.0)
        self.parser = None

    def abort(self) -> None:
        """Drop the connection at once (no close frame), forgetting it in the core."""
        self.release_partial()
        server = self.server
        if self.state == _OPEN and server is not None and self.conn is not None:
            server.router.disconnect(self.conn, "error")
        self.state = _CLOSED
        self.out = None
        if self.transport is not None:
            self.transport.abort()

    def _send_raw(self, data: bytes) -> None:
        # Control frames go after anything already queued, preserving order.
        if self.out is not None:
            self.flush()
        if self.state == _OPEN and self.transport is not None:
            self.transport.write(data)

    def close(self, code: int, reason: str, why: str | None = None) -> None:
        """Send a close frame and end the connection; the core forgets it at once.

        `why` names the cause in the `closed` metric (default from the code).
        """
        if self.state != _OPEN:
            return
        try:
            self._send_raw(encode_close(code, reason))
        finally:
            # Whatever failed above, the core forgets the connection and the
            # socket closes: a half-closed connection must not linger.
            self.state = _CLOSED
            server = self.server
            try:
                self.release_partial()
                if server is not None and self.conn is not None:
                    if why is None:
                        why = {1000: "closed", 1001: "going_away", 1008: "abuse"}.get(code, "error")
                    server.router.disconnect(self.conn, why)
            finally:
                if self.transport is not None:
                    self.transport.close()

    def keepalive(self, now: float) -> None:
        """Called periodically: ping, or close a connection silent for too long."""
        if self.state != _OPEN:
            return
        limits = self.server.limits if self.server is not None else None
        assert limits is not None
        if limits.idle_timeout > 0 and now - self.last_seen > limits.idle_timeout:
            self.close(CLOSE_GOING_AWAY, "idle timeout", "idle")
            return
        if limits.ping_interval > 0:
            self._send_raw(encode_frame_header(OP_PING, 0))


async def _keep_scope(_scope: Any, _receive: Any, _send: Any) -> None:
    return None  # the middleware rewrote the scope's client in place: that is all we need


async def _no_receive() -> Any:
    raise RuntimeError("not an ASGI request")


async def _no_send(_message: Any) -> None:
    raise RuntimeError("not an ASGI request")


def _completed_message(events: list[tuple[int, bytes]]) -> bool:
    """Whether a data message (or an oversize one, skipped) completed among `events`.

    Control frames do not count: a ping between the fragments of a message
    must not keep that message's clock from running.
    """
    return any(kind in (EV_BINARY, EV_TEXT, EV_OVERSIZE) for kind, _ in events)


def _log_task_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("connect authentication failed unexpectedly", exc_info=task.exception())
