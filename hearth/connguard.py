"""uvicorn glue for `hearth.netlimits`: how every service accepts and reads connections.

- `Listener` accepts on a listening socket itself (instead of
  `loop.create_server`): a connection over its server's per-address cap or the
  process's socket budget is answered 503 and closed right there, before a
  transport, a protocol or a task exists for it; when `accept()` fails for
  want of descriptors it stops accepting for `ACCEPT_BACKOFF` seconds and says
  so. (asyncio's own loop logged a traceback for each of up to 2,048 failed
  `accept()` calls a second, and accepted a whole backlog before any
  admission check could run.)
- `guarded_http_protocol` returns a subclass of uvicorn's h11 protocol that
  closes a connection whose request head is not complete `header_timeout`
  seconds after the connection opened (or after the previous response), and
  one whose body is not complete `body_timeout` seconds after its head: h11
  alone waits forever, and uvicorn's keep-alive timer stops at the first byte,
  so a byte every few seconds held a socket indefinitely. It drops a
  connection whose answer the client has left unread (writing paused) for
  `send_timeout` seconds: the app awaited the drain, and the answer stayed
  in memory, forever. It ends the
  connection's lease when the connection ends; after a WebSocket upgrade the
  WebSocket protocol's `connection_lost` does.

Refusals and timeouts are logged at WARNING under `hearth.net` with one
message template each, so `hearth.logs.RepeatFilter` collapses a flood of them.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from hearth.netlimits import ConnectionTable, Lease, NetLimits, address_key

log = logging.getLogger("hearth.net")

_REFUSAL_BODY = b'{"error":"TooManyConnections","message":"too many connections; retry later"}'
REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"content-type: application/json\r\n"
    b"retry-after: 5\r\n"
    b"connection: close\r\n"
    b"content-length: " + str(len(_REFUSAL_BODY)).encode() + b"\r\n\r\n" + _REFUSAL_BODY
)

_HEAD, _BODY, _UPGRADED = "head", "body", "upgraded"
ACCEPT_BATCH = 64  # accept() calls per readiness event, so one listener cannot starve others
ACCEPT_BACKOFF = 1.0  # seconds without accepting after running out of descriptors
_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)

# WebSocket protocol class -> its subclass that ends the connection's lease.
_leased_classes: dict[type[asyncio.Protocol], type[asyncio.Protocol]] = {}


def _leased(base: type[asyncio.Protocol]) -> type[asyncio.Protocol]:
    cls = _leased_classes.get(base)
    if cls is None:

        def connection_lost(self: Any, exc: Exception | None) -> None:
            try:
                base.connection_lost(self, exc)
            finally:
                lease: Lease | None = getattr(self, "_hearth_lease", None)
                if lease is not None:
                    lease.release()

        cls = type(
            base.__name__,
            (base,),
            {
                "__slots__": ("_hearth_lease",),
                "__module__": base.__module__,
                "__qualname__": base.__qualname__,
                "connection_lost": connection_lost,
            },
        )
        _leased_classes[base] = cls
    return cls


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with read deadlines (see the module docstring).

    Use a subclass from `guarded_http_protocol`, which sets `limits`.
    """

    limits: NetLimits

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if isinstance(self.ws_protocol_class, type):
            self.ws_protocol_class = _leased(self.ws_protocol_class)
        self.lease: Lease | None = None  # set by the Listener that accepted the connection
        self._phase: str | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._stalled: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # Writing counts as paused as soon as anything waits in our buffer
        # (the kernel's send buffer is full), so the send deadline also covers
        # a close that waits for unread bytes, which asyncio does forever.
        transport.set_write_buffer_limits(high=0)
        super().connection_made(transport)
        self._update_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._set_deadline(None)
        self._unstall()
        if self.lease is not None:
            self.lease.release()
            self.lease = None
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        timeout = self.limits.send_timeout
        if timeout > 0 and self._stalled is None:
            self._stalled = self.loop.call_later(timeout, self._stall_expired, timeout)

    def resume_writing(self) -> None:
        self._unstall()
        super().resume_writing()

    def _unstall(self) -> None:
        if self._stalled is not None:
            self._stalled.cancel()
            self._stalled = None

    def _stall_expired(self, timeout: float) -> None:
        self._stalled = None
        host = self.client[0] if self.client else None
        log.warning("dropped a connection from %s: answer unread for %gs", _shown(host), timeout)
        # abort, not close: close would wait for the unread answer to drain.
        self.transport.abort()

    def handle_events(self) -> None:
        super().handle_events()
        if self._phase != _UPGRADED and not self.transport.is_closing():
            self._update_deadline()

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._set_deadline(_UPGRADED)
        self._unstall()
        self.transport.set_write_buffer_limits()  # the WebSocket protocol's own flow control
        lease, self.lease = self.lease, None
        super().handle_websocket_upgrade(event)
        protocol = self.transport.get_protocol()
        if lease is None:
            return
        if type(protocol) in _leased_classes.values():
            protocol._hearth_lease = lease  # type: ignore[attr-defined]
        else:
            lease.release()  # not ours to follow: stop counting it

    def _update_deadline(self) -> None:
        state = self.conn.their_state
        if state is h11.IDLE:
            self._set_deadline(_HEAD)
        elif state is h11.SEND_BODY:
            self._set_deadline(_BODY)
        else:
            self._set_deadline(None)

    def _set_deadline(self, phase: str | None) -> None:
        if phase == self._phase:
            return
        self._phase = phase
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if phase == _HEAD:
            timeout = self.limits.header_timeout
        elif phase == _BODY:
            timeout = self.limits.body_timeout
        else:
            return
        if timeout > 0:
            self._deadline = self.loop.call_later(timeout, self._expired, phase, timeout)

    def _expired(self, phase: str, timeout: float) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if phase == _HEAD and not self.conn.trailing_data[0]:
            # An idle keep-alive connection, not a slow client: close it quietly.
            self.transport.close()
            return
        host = self.client[0] if self.client else None
        log.warning(
            "closed a connection from %s: request %s unfinished after %gs",
            _shown(host),
            phase,
            timeout,
        )
        self.transport.close()


def guarded_http_protocol(limits: NetLimits) -> type[GuardedH11Protocol]:
    """The protocol class for servers with `limits` (`uvicorn.Config(http=cls)`)."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"limits": limits})


class Listener:
    """Accepts connections on a listening socket within a `ConnectionTable`.

    `factory()` makes the protocol of an admitted connection; a protocol with a
    `lease` attribute gets the connection's lease and must release it when the
    connection ends (`GuardedH11Protocol` does); for any other the lease ends
    at once. Call `start()` on the running loop, `close()` to stop accepting
    (the listening socket stays open: it is the caller's).
    """

    def __init__(
        self,
        sock: socket.socket,
        factory: Callable[[], asyncio.Protocol],
        table: ConnectionTable,
    ) -> None:
        self.sock = sock
        self.factory = factory
        self.table = table
        self.paused = 0  # times accept() ran out of descriptors
        self._loop: asyncio.AbstractEventLoop | None = None
        self._resume: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.sock.setblocking(False)
        self._loop.add_reader(self.sock.fileno(), self._accept)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None

    def _accept(self) -> None:
        assert self._loop is not None
        for _ in range(ACCEPT_BATCH):
            try:
                conn, addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in _OUT_OF_RESOURCES:
                    self._back_off(e)
                    return
                # ECONNABORTED and the like: that client is gone, the next may not be.
                continue
            host = addr[0] if isinstance(addr, tuple) and addr else None
            lease = self.table.admit(host if isinstance(host, str) else None)
            if isinstance(lease, str):
                log.warning("refused a connection from %s: %s", _shown(host), lease)
                _refuse(conn)
                continue
            task = self._loop.create_task(self._serve(conn, lease))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve(self, conn: socket.socket, lease: Lease) -> None:
        def protocol() -> asyncio.Protocol:
            made = self.factory()
            if isinstance(made, GuardedH11Protocol):
                made.lease = lease
            else:
                lease.release()
            return made

        conn.setblocking(False)
        try:
            assert self._loop is not None
            await self._loop.connect_accepted_socket(protocol, conn)
        except OSError:
            lease.release()
            conn.close()

    def _back_off(self, e: OSError) -> None:
        assert self._loop is not None
        self.paused += 1
        log.warning("accept() failed (%s): not accepting for %gs", e.strerror, ACCEPT_BACKOFF)
        self._loop.remove_reader(self.sock.fileno())
        self._resume = self._loop.call_later(ACCEPT_BACKOFF, self._resume_accepting)

    def _resume_accepting(self) -> None:
        self._resume = None
        assert self._loop is not None
        self._loop.add_reader(self.sock.fileno(), self._accept)


def _refuse(conn: socket.socket) -> None:
    """Best-effort 503 on a fresh socket, then close it (never blocks)."""
    try:
        conn.setblocking(False)
        conn.send(REFUSAL)
        # Unread input would turn the close into a reset that may discard the 503.
        conn.recv(65536)
    except OSError:
        pass
    finally:
        conn.close()


def _shown(host: object) -> str:
    return address_key(host) if isinstance(host, str) else "?"
