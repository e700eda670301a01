"""Async Python client for the router: tests, bench, the Python peer and bots use it.

    signer = Signer.generate()
    async with RouterClient(url, did_key_auth(signer, router_did)) as client:
        await client.listen("doc1")
        async for event in client:
            match event:
                case Join(did, conn_id, doc): await client.send(did, conn_id, doc, b"hi")
                case Deliver(): print(event.body)

`RouterClient` reconnects by itself with jittered exponential backoff, asks
`auth` for a fresh token each time (tokens are single-use) and restores the
interest set. After each (re)connect the iterator yields `Welcome` (with the
new connId); after a loss it yields `Disconnected`, and the peers it knew must
be forgotten: the router sends fresh `join`s after the `listen` is restored.
Any failure of an attempt (refused or reset connection, token endpoint down,
a bad first frame) is logged and retried; only `close()` stops the client, and
the event iterator always ends after it. A refusal that says when to retry
(429 or 503 with `Retry-After`, from the router's upgrade or its token
endpoint) is not retried sooner, up to `MAX_RETRY_AFTER`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from hearth.jwt import Signer, mint_service_jwt
from hearth.types import ConnId, Did, DocumentId
from router.frames import FrameError, decode_frame, encode_frame
from router.messages import (
    HEARTH_SUBPROTOCOL,
    Deliver,
    ErrorMessage,
    Join,
    Leave,
    MessageError,
    ServerMessage,
    Unknown,
    Welcome,
    parse_server_message,
)

log = logging.getLogger("hearth.router.client")

CONNECT_LXM = "chat.hearth.v1.router.connect"
MAX_RETRY_AFTER = 600.0  # the longest `Retry-After` honoured, seconds

__all__ = [
    "Auth",
    "Deliver",
    "Disconnected",
    "ErrorMessage",
    "Join",
    "Leave",
    "NotConnected",
    "RouterClient",
    "Unknown",
    "Welcome",
    "did_key_auth",
    "router_token_auth",
]


@dataclass(frozen=True, slots=True)
class Auth:
    """Who connects and how to get a token for each connection attempt."""

    did: Did
    token: Callable[[], Awaitable[str]]  # called once per attempt: tokens are single-use


def did_key_auth(signer: Signer, router_did: str, *, ttl: int = 30) -> Auth:
    """Connect as `signer`'s did:key with a self-signed JWT (no server round trip)."""
    did = Did(signer.did_key)

    async def token() -> str:
        return mint_service_jwt(signer, iss=did, aud=router_did, lxm=CONNECT_LXM, ttl=ttl)

    return Auth(did, token)


def router_token_auth(
    did: str, url: str, service_jwt: Callable[[], Awaitable[str]], *, nsid: str | None = None
) -> Auth:
    """Connect with a router token from `GET /xrpc/<nsid>`, fetched with a service-auth JWT.

    `service_jwt()` must return a fresh JWT (`aud` = router DID, `lxm` = `nsid`),
    e.g. one minted by the user's PDS.
    """
    import httpx  # only this helper needs an HTTP client

    method = nsid or "chat.hearth.v1.router.token"

    async def token() -> str:
        jwt = await service_jwt()
        async with httpx.AsyncClient() as http:
            response = await http.get(
                f"{url.rstrip('/')}/xrpc/{method}", headers={"Authorization": f"Bearer {jwt}"}
            )
        response.raise_for_status()
        value = response.json()["token"]
        assert isinstance(value, str)
        return value

    return Auth(Did(did), token)


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The connection was lost (or refused); the client will reconnect unless closed."""

    code: int | None
    reason: str


class NotConnected(Exception):
    """`send` was called while no connection is open."""


Event = ServerMessage | Disconnected


def ws_url(url: str, did: str) -> str:
    base = url.rstrip("/")
    if base.startswith("http"):
        base = "ws" + base[4:]
    return f"{base}/connect/as/{did}"


def retry_after(error: BaseException) -> float:
    """Seconds a refusal asks to wait before the next attempt (0 if it does not say).

    `error` may be websockets' `InvalidStatus` (a refused upgrade) or httpx's
    `HTTPStatusError` (the token endpoint); only a 429 or 503 with
    `Retry-After` in seconds counts, capped at `MAX_RETRY_AFTER`.
    """
    response: Any = getattr(error, "response", None)
    if getattr(response, "status_code", None) not in (429, 503):
        return 0.0
    value = response.headers.get("Retry-After")
    if not isinstance(value, str) or not value.strip().isdecimal() or not value.isascii():
        return 0.0  # the HTTP-date form: Hearth never sends it
    return min(float(value.strip()), MAX_RETRY_AFTER)


class RouterClient:
    """A reconnecting router connection. Use as an async context manager.

    `url` is the router's base URL (http(s):// or ws(s)://). Set `reconnect=False`
    to get one connection only: the iterator ends when it closes, and a refused
    handshake raises from `start()`.
    """

    def __init__(
        self,
        url: str,
        auth: Auth,
        *,
        reconnect: bool = True,
        backoff_min: float = 0.05,
        backoff_max: float = 10.0,
        max_size: int = 1 << 20,
        queue_size: int = 10_000,
    ) -> None:
        self.url = url
        self.auth = auth
        self.reconnect = reconnect
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.max_size = max_size
        self.interests: tuple[DocumentId, ...] = ()
        self.welcome: Welcome | None = None
        self._ws: ClientConnection | None = None
        self._events: asyncio.Queue[Event | None] = asyncio.Queue(queue_size)
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._stop = asyncio.Event()  # set by close(): ends a wait between attempts
        # End of stream is a flag, not only a queue item: a full queue must not lose it.
        self._eof = False

    @property
    def did(self) -> Did:
        return self.auth.did

    @property
    def conn_id(self) -> ConnId | None:
        """This connection's id, known after `welcome` (None while disconnected)."""
        return self.welcome.conn_id if self.welcome is not None and self._ws else None

    async def __aenter__(self) -> RouterClient:
        await self.start()
        return self

    async def __aexit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect, wait for `welcome`, and start the background reader/reconnector.

        With `reconnect=True` this retries (with backoff) until the first
        connection opens or `close()` is called; with `reconnect=False` the
        first failure raises.
        """
        if not self.reconnect:
            await self._connect_once()
        else:
            attempt = 0
            while not self._closing:
                try:
                    await self._connect_once()
                    break
                except Exception as e:  # anything but cancellation: retry
                    self._log_failure("connect", attempt, e)
                    await self._pause(max(self._backoff(attempt), retry_after(e)))
                attempt += 1
            if self._closing:
                return
        self._task = asyncio.create_task(self._run())

    async def wait_connected(self) -> None:
        await self._connected.wait()

    async def close(self) -> None:
        """Close the connection and stop reconnecting; the event iterator ends."""
        self._closing = True
        self._stop.set()
        if self._ws is not None:
            await self._ws.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._finish()

    # ------------------------------------------------------------ commands

    async def listen(self, *docs: str) -> None:
        """Replace the interest set (restored automatically after a reconnect)."""
        self.interests = tuple(DocumentId(d) for d in docs)
        if self._ws is not None:
            with contextlib.suppress(ConnectionClosed):
                await self._ws.send(encode_frame(["listen", *self.interests]))

    async def send(self, to_did: str, to_conn: str, doc: str, body: bytes) -> None:
        """Relay `body` to one connection; raises NotConnected while disconnected."""
        await self.send_frame(encode_frame(["send", to_did, to_conn, doc], body))

    async def send_frame(self, frame: bytes) -> None:
        """Send one pre-encoded frame (for verbs this client has no helper for)."""
        ws = self._ws
        if ws is None:
            raise NotConnected("not connected to the router")
        try:
            await ws.send(frame)
        except ConnectionClosed as e:
            raise NotConnected("the router connection closed") from e

    # ------------------------------------------------------------ events

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        while True:
            try:
                yield await self.next_event()
            except EOFError:
                return

    async def next_event(self) -> Event:
        """The next event; raises EOFError once the client is closed.

        Bound the wait with `asyncio.timeout()` if needed.
        """
        # Events queued before the end are still delivered; the end itself is
        # the flag, so it is seen even if the queue was too full to hold None.
        if self._eof and self._events.empty():
            raise EOFError("router client closed")
        event = await self._events.get()
        if event is None:
            raise EOFError("router client closed")
        return event

    # ------------------------------------------------------------ internals

    async def _pause(self, seconds: float) -> None:
        """Wait `seconds`, or less if `close()` is called meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    def _backoff(self, attempt: int) -> float:
        # Full jitter: uniformly random up to the exponential bound.
        return random.uniform(0, min(self.backoff_max, self.backoff_min * 2**attempt))

    def _finish(self) -> None:
        """Mark the end of the event stream (idempotent)."""
        if self._eof:
            return
        self._eof = True
        # Wakes a reader blocked in get(); a reader can only be blocked on an
        # empty queue, so when the queue is full nobody needs waking.
        with contextlib.suppress(asyncio.QueueFull):
            self._events.put_nowait(None)

    def _log_failure(self, what: str, attempt: int, e: Exception) -> None:
        if isinstance(e, InvalidStatus):
            detail = f"refused with HTTP {e.response.status_code}"
        else:
            detail = f"{type(e).__name__}: {e}"
        level = logging.INFO if attempt < 3 else logging.WARNING
        log.log(level, "router %s attempt %d failed: %s", what, attempt + 1, detail)

    async def _connect_once(self) -> None:
        token = await self.auth.token()
        ws = await connect(
            ws_url(self.url, self.auth.did),
            # `hearth.v1`: we understand the extension frames (welcome, error, ...).
            subprotocols=[
                websockets.Subprotocol("authorization"),
                websockets.Subprotocol(token),
                websockets.Subprotocol(HEARTH_SUBPROTOCOL),
            ],
            compression=None,
            max_size=self.max_size,
            open_timeout=10,
        )
        try:
            first = await asyncio.wait_for(ws.recv(decode=False), 10)
            welcome = self._parse(first)
            if not isinstance(welcome, Welcome):
                raise InvalidHandshake("router did not send welcome first")
            sent: tuple[DocumentId, ...] = ()
            # `listen()` may run while we send: repeat until what went out is current.
            while self.interests != sent:
                sent = self.interests
                await ws.send(encode_frame(["listen", *sent]))
        except BaseException:
            await ws.close()
            raise
        self._ws = ws
        self.welcome = welcome
        self._connected.set()
        await self._events.put(welcome)

    def _parse(self, data: bytes | str) -> ServerMessage:
        raw = data.encode() if isinstance(data, str) else data
        header, body = decode_frame(raw)
        return parse_server_message(header, bytes(body))

    async def _run(self) -> None:
        try:
            await self._read_and_reconnect()
        except Exception:  # a bug here must not leave the iterator hanging
            log.exception("router client stopped unexpectedly")
        finally:
            self._ws = None
            self._connected.clear()
            self._finish()

    async def _read_and_reconnect(self) -> None:
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            ws = self._ws
            assert ws is not None
            opened_at = loop.time()
            code: int | None = None
            reason = ""
            try:
                async for data in ws:
                    try:
                        event = self._parse(data)
                    except (FrameError, MessageError) as e:
                        log.warning("dropping malformed frame from the router: %s", e)
                        continue
                    await self._events.put(event)
            except ConnectionClosed:
                pass
            except Exception as e:  # not expected from websockets; treat as a lost connection
                log.warning("router connection failed: %s: %s", type(e).__name__, e)
                await ws.close()
            if ws.close_code is not None:
                code = ws.close_code
                reason = ws.close_reason or ""
            self._ws = None
            self._connected.clear()
            if self._closing:
                return
            await self._events.put(Disconnected(code, reason))
            if not self.reconnect:
                return
            # The backoff starts over only after a connection that lasted: a
            # router that accepts and drops us at once must not be hammered.
            if loop.time() - opened_at >= self.backoff_max:
                attempt = 0
            wait_at_least = 0.0  # what the last refusal asked for
            while not self._closing:
                await self._pause(max(self._backoff(attempt), wait_at_least))
                attempt += 1
                try:
                    await self._connect_once()
                    break
                except Exception as e:  # anything but cancellation: retry
                    self._log_failure("reconnect", attempt - 1, e)
                    wait_at_least = retry_after(e)
            if self._closing:
                return
