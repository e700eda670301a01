"""The Python peer: router events in, one `PeerLink` per other connection.

    async with RouterClient(url, did_key_auth(signer, router_did)) as client:
        peer = Peer(client, PeerConfig(), on_message=handle)
        await peer.start()
        await peer.listen("doc1")
        await peer.send_wait(conn_id, "doc1", b"hello")  # channel or relay, once, in order
        peer.stats()                              # path and bytes per path, per link

`on_message(link, doc, data)` runs for every application message, in order per
link; `on_link(link, doc, up)` when a connection starts or stops sharing a
document with us. A connection that leaves every shared document, or a router
disconnect, closes its link (its messages in flight are lost with it: the
layer above, e.g. Automerge sync, starts over with the next link).

Backpressure: a link accepts messages while less than `config.window` bytes
are unacknowledged. `send_wait` waits for room; `send` never waits and raises
`WindowFull` instead (for callers that cannot await, e.g. callbacks: check
`link.window_open` and `await link.drained()`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from hearth.types import ConnId, Did, DocumentId
from peer.link import Path, PeerConfig, PeerLink
from peer.messages import PeerMessageError, decode_envelope, encode_envelope, parse_signal_body
from peer.transport import MessageTooLarge, WindowFull
from router.client import (
    Deliver,
    Disconnected,
    ErrorMessage,
    Join,
    Leave,
    RouterClient,
    Unknown,
    Welcome,
)
from router.frames import encode_frame
from router.messages import MessageError
from router.signaling import parse_ice_servers, parse_signal

log = logging.getLogger("hearth.peer")

__all__ = ["MessageTooLarge", "Path", "Peer", "PeerConfig", "PeerLink", "WindowFull"]

OnMessage = Callable[[PeerLink, DocumentId, bytes], None]
OnLink = Callable[[PeerLink, DocumentId, bool], None]

ICE_SERVERS_TIMEOUT = 10.0
CLOSED_LINKS_KEPT = 100
MAX_ERRORS_KEPT = 100
FAILED_KEPT = 1000  # connections whose stream broke the limits: no new link to them


class Peer:
    """Joins documents through a started `RouterClient` and keeps links to the others."""

    def __init__(
        self,
        client: RouterClient,
        config: PeerConfig | None = None,
        *,
        on_message: OnMessage | None = None,
        on_link: OnLink | None = None,
    ) -> None:
        self.client = client
        self.config = config or PeerConfig()
        self.on_message = on_message
        self.on_link = on_link
        self.links: dict[ConnId, PeerLink] = {}
        # stats of the last links that ended
        self.closed_links: deque[dict[str, Any]] = deque(maxlen=CLOSED_LINKS_KEPT)
        self.errors: list[ErrorMessage] = []
        self.changed = asyncio.Event()  # set whenever a link appears or goes
        self._failed: OrderedDict[ConnId, str] = OrderedDict()
        self._drops: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._ice: tuple[float, list[dict[str, Any]]] | None = None
        self._ice_waiter: asyncio.Future[list[dict[str, Any]]] | None = None
        self._ice_lock = asyncio.Lock()

    @property
    def did(self) -> Did:
        return self.client.did

    @property
    def conn_id(self) -> ConnId | None:
        return self.client.conn_id

    async def start(self) -> None:
        """Start handling router events; the client must be started."""
        self._task = asyncio.create_task(self._run())

    async def listen(self, *docs: str) -> None:
        await self.client.listen(*docs)

    def send(self, conn_id: str, doc: str, data: bytes) -> bool:
        """Queue `data` about `doc` for that connection; False (dropped) if it is not linked.

        Never waits: raises `WindowFull` while that link's window is closed
        (nothing queued; see `send_wait`) and `MessageTooLarge` if the message
        is over `config.max_message`.
        """
        link = self.links.get(ConnId(conn_id))
        if link is None:
            return False
        link.send(encode_envelope(doc, data))
        return True

    async def send_wait(self, conn_id: str, doc: str, data: bytes) -> bool:
        """As `send`, but first waits while the link's window is closed.

        False if the connection is not linked, or its link closed while waiting.
        """
        link = self.links.get(ConnId(conn_id))
        if link is None:
            return False
        message = encode_envelope(doc, data)
        if len(message) > link.config.max_message:
            raise MessageTooLarge(
                f"message of {len(message)} bytes over max_message ({link.config.max_message})"
            )
        while not link.window_open:
            await link.drained()
        if link.closed or link.failure is not None:
            return False
        link.send(message)
        return True

    def stats(self) -> dict[str, Any]:
        """Per link: path in use, bytes and packets per path, channel attempts."""
        return {
            "did": self.did,
            "connId": self.conn_id,
            "links": [link.stats() for link in self.links.values()],
            "closedLinks": list(self.closed_links),
        }

    async def wait_link(self, pred: Callable[[PeerLink], bool] | None = None) -> PeerLink:
        """The first link (satisfying `pred`) once there is one."""
        while True:
            for link in self.links.values():
                if pred is None or pred(link):
                    return link
            self.changed.clear()
            await self.changed.wait()

    async def close(self) -> None:
        for task in list(self._drops):
            task.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._drop_all()

    # ------------------------------------------------------------ events

    async def _run(self) -> None:
        async for event in self.client:
            try:
                await self._handle(event)
            except Exception:
                log.exception("peer: handling %r failed", type(event).__name__)

    async def _handle(self, event: object) -> None:
        match event:
            case Deliver(from_did, from_conn, _doc, body):
                link = self.links.get(from_conn)
                if link is not None and link.did == from_did:
                    link.receive(body, Path.RELAY)
            case Join(did, conn_id, doc):
                await self._join(did, conn_id, doc)
            case Leave(did, conn_id, doc):
                await self._leave(did, conn_id, doc)
            case Unknown(header, body):
                self._unknown(header, body)
            case Welcome() | Disconnected():
                # a new connection: every link belonged to the old one, and the
                # others see our old connId leave, so even a healthy channel
                # cannot be kept (see docs/p2p.md, "Router reconnects")
                await self._drop_all()
            case ErrorMessage(code, _message, verb):
                log.info("router error: %s", event)
                if len(self.errors) < MAX_ERRORS_KEPT:
                    self.errors.append(event)
                if code == "unknown_verb" and verb in ("signal", "ice-servers"):
                    self._no_webrtc(verb)

    async def _join(self, did: Did, conn_id: ConnId, doc: DocumentId) -> None:
        link = self.links.get(conn_id)
        if link is not None and link.did != did:
            return
        if link is None:
            if conn_id in self._failed:
                return  # it broke the stream's limits once; no second chance
            local = self.client.conn_id
            if local is None:
                return
            link = PeerLink(
                local=(self.did, local),
                remote=(did, conn_id),
                doc=doc,
                config=self.config,
                send_signal=self._send_signal,
                send_relay=self._send_relay,
                ice_source=self._ice_servers,
                deliver=self._deliver,
                on_fail=self._link_failed,
            )
            self.links[conn_id] = link
            link.start()
            self.changed.set()
        else:
            link.docs[doc] = None
        if self.on_link is not None:
            self.on_link(link, doc, True)

    async def _leave(self, did: Did, conn_id: ConnId, doc: DocumentId) -> None:
        link = self.links.get(conn_id)
        if link is None or link.did != did or doc not in link.docs:
            return
        del link.docs[doc]
        if self.on_link is not None:
            self.on_link(link, doc, False)
        if not link.docs:
            await self._drop(link)

    async def _drop(self, link: PeerLink) -> None:
        self.links.pop(link.conn_id, None)
        self.closed_links.append(link.stats())
        self.changed.set()
        await link.close()

    def _link_failed(self, link: PeerLink, reason: str) -> None:
        """The other side broke the stream's limits: close its link, refuse new ones."""
        self._failed[link.conn_id] = reason
        while len(self._failed) > FAILED_KEPT:
            self._failed.popitem(last=False)
        if self.links.get(link.conn_id) is not link:
            return

        task = asyncio.create_task(self._unlink(link))
        self._drops.add(task)
        task.add_done_callback(self._drops.discard)

    async def _unlink(self, link: PeerLink) -> None:
        """Tell `on_link` that every document of `link` is gone, then drop it."""
        docs = list(link.docs)
        link.docs.clear()
        if self.on_link is not None:
            for doc in docs:
                self.on_link(link, doc, False)
        await self._drop(link)

    async def _drop_all(self) -> None:
        for link in list(self.links.values()):
            await self._unlink(link)

    def _no_webrtc(self, verb: str) -> None:
        """The router does not serve `verb` (e.g. a Roomy v0 router): relay only."""
        if verb == "ice-servers":
            waiter = self._ice_waiter
            if waiter is not None and not waiter.done():
                waiter.set_result([])
            self._ice = (float("inf"), [])
            return
        if self.config.webrtc:
            log.warning("the router does not forward signal; using its relay only")
            self.config = dataclasses.replace(self.config, webrtc=False)
            for link in self.links.values():
                link.disable_webrtc()

    def _unknown(self, header: list[Any], body: bytes) -> None:
        verb = header[0] if header else None
        try:
            if verb == "signal":
                signal = parse_signal(header, body)
                link = self.links.get(signal.conn_id)
                if link is not None and link.did == signal.did:
                    link.signal(parse_signal_body(signal.body))
            elif verb == "ice-servers":
                answer = parse_ice_servers(header, body)
                waiter = self._ice_waiter
                if waiter is not None and not waiter.done():
                    waiter.set_result(answer.servers)
                ttl = answer.ttl or float("inf")
                self._ice = (time.monotonic() + ttl * 0.8, answer.servers)
        except (MessageError, PeerMessageError) as e:
            log.warning("dropping bad %s frame: %s", verb, e)

    def _deliver(self, link: PeerLink, message: bytes) -> None:
        try:
            doc, data = decode_envelope(message)
        except PeerMessageError as e:
            log.warning("bad envelope from %s: %s", link.conn_id, e)
            return
        if self.on_message is not None:
            self.on_message(link, doc, data)

    # ------------------------------------------------------------ router I/O for links

    async def _send_signal(self, did: Did, conn_id: ConnId, doc: DocumentId, body: bytes) -> None:
        await self.client.send_frame(encode_frame(["signal", did, conn_id, doc], body))

    async def _send_relay(self, did: Did, conn_id: ConnId, doc: DocumentId, body: bytes) -> None:
        await self.client.send(did, conn_id, doc, body)

    async def _ice_servers(self) -> list[dict[str, Any]]:
        """The router's ICE servers (cached until 80% of their ttl)."""
        async with self._ice_lock:
            cached = self._ice
            if cached is not None and cached[0] > time.monotonic():
                return cached[1]
            self._ice_waiter = asyncio.get_running_loop().create_future()
            await self.client.send_frame(encode_frame(["ice-servers"]))
            try:
                return await asyncio.wait_for(self._ice_waiter, ICE_SERVERS_TIMEOUT)
            except TimeoutError:
                log.warning("router sent no ice-servers answer; using none")
                return []
