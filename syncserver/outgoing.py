"""The process-wide budget for bytes waiting to be sent: who is shed when it is exceeded.

No I/O and no clock: connections report what they hold and pass `now` in.

Every connection's outgoing bytes (our send queue, the frame being written, and
what the WebSocket transport still buffers) count against a per-connection bound
(the connection enforces it on itself: see `syncserver/transport.py`) and against
one total for the process, enforced here. When a connection's growth takes the
total over the bound, connections are closed, **slowest first**, until it is back
under: the ones whose buffers have gone longest without draining (ties: the one
holding the most bytes). Shedding a connection drops its queue at once and closes
it with `CLOSE_SERVER_BUSY` once the frame in hand is written; if the bytes its
transport still holds are needed too, it is aborted (TCP reset, no close frame),
which frees them at once. A shed connection is aborted anyway after
`SHED_GRACE` seconds if it has not gone by then.

Cost: O(1) per update; O(n log n) in the number of connections holding bytes
when the total is exceeded (each is re-measured, then ordered).
"""

from __future__ import annotations

from typing import Protocol

#: Close code and reason for a connection shed to bring the total under its bound.
#: 1013 "Try Again Later": the server is short of memory for outgoing data, not
#: this peer's fault alone; automerge-repo reconnects and resumes.
CLOSE_SERVER_BUSY = 1013
SERVER_BUSY_REASON = "server busy: outgoing buffers full, slowest readers closed first"
#: Seconds a shed connection may take to read what is already written (and so see
#: its close frame) before its transport is aborted.
SHED_GRACE = 2.0


class Outgoing(Protocol):
    """One connection's outgoing side, as the budget sees it."""

    def buffered_bytes(self) -> int:
        """Bytes held for this connection right now (queue, frame in hand, transport)."""
        ...

    def shed(self, code: int, reason: str) -> None:
        """Drop the queue and close with `code` after the frame in hand; never blocks."""
        ...

    def abort(self) -> None:
        """Drop the connection now, freeing everything it holds; never blocks."""
        ...


class _Account:
    __slots__ = ("bytes", "last_progress", "shed")

    def __init__(self, now: float) -> None:
        self.bytes = 0
        self.last_progress = now
        self.shed = False


class OutgoingBudget:
    """Bytes held for sending, per connection and in total; sheds the slowest.

    Call `add` when a connection opens, `update` whenever its outgoing bytes may
    have changed (after queueing, after a write), and `remove` when it is gone.
    """

    def __init__(self, total: int) -> None:
        self.total_limit = total
        self._accounts: dict[Outgoing, _Account] = {}
        self._total = 0
        #: Connections shed (closed with CLOSE_SERVER_BUSY) and aborted, since start.
        self.shed_count = 0
        self.aborted_count = 0

    @property
    def total(self) -> int:
        """Bytes held for all connections, as last measured."""
        return self._total

    def __len__(self) -> int:
        return len(self._accounts)

    def add(self, conn: Outgoing, now: float) -> None:
        self._accounts[conn] = _Account(now)

    def remove(self, conn: Outgoing) -> None:
        account = self._accounts.pop(conn, None)
        if account is not None:
            self._total -= account.bytes

    def mark_shed(self, conn: Outgoing) -> None:
        """`conn` is closing (it shed itself, e.g. over its own bound): shed it no more
        gracefully, abort it first if bytes are needed."""
        account = self._accounts.get(conn)
        if account is not None:
            account.shed = True

    def update(self, conn: Outgoing, now: float) -> None:
        """Re-measure `conn`; if the total is now over the bound, shed the slowest."""
        account = self._accounts.get(conn)
        if account is None:
            return
        self._measure(conn, account, now)
        if self._total > self.total_limit:
            self._enforce(now)

    def _measure(self, conn: Outgoing, account: _Account, now: float) -> None:
        size = conn.buffered_bytes()
        if size < account.bytes or size == 0 or account.bytes == 0:
            # It drained something since we last looked (it is reading), or its
            # backlog starts now.
            account.last_progress = now
        self._total += size - account.bytes
        account.bytes = size

    def _enforce(self, now: float) -> None:
        # What we know may be stale (transports drain without telling us): look again.
        for conn, account in self._accounts.items():
            self._measure(conn, account, now)
        if self._total <= self.total_limit:
            return
        # Already-shed connections go first (their bytes are held for nothing but a
        # close frame), then the live ones that have gone longest without draining.
        order = sorted(
            (item for item in self._accounts.items() if item[1].bytes),
            key=lambda item: (not item[1].shed, item[1].last_progress, -item[1].bytes),
        )
        for conn, account in order:
            if self._total <= self.total_limit:
                break
            if not account.shed:
                account.shed = True
                self.shed_count += 1
                conn.shed(CLOSE_SERVER_BUSY, SERVER_BUSY_REASON)
                self._measure(conn, account, now)
                if self._total <= self.total_limit:
                    break
            self.aborted_count += 1
            conn.abort()
            self._total -= account.bytes
            account.bytes = 0
