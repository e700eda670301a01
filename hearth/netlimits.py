"""Connection-level limits every service shares: who may hold how many sockets.

Plain bookkeeping, no I/O: `hearth.connguard` feeds it from uvicorn's
protocol callbacks. What it bounds and what it costs:

- **Per address.** One client address (an IPv6 address counts by its /64, the
  block one host usually gets) holds at most `max_per_address` connections to
  one service; the next is answered 503 and closed at once. Behind a reverse
  proxy every client has the proxy's address: raise the cap or turn it off (0).
- **Per process.** All services of one process (`hearth up` runs five) hold at
  most `max_sockets` client connections together. The default keeps a quarter
  of the file-descriptor limit (at least 64) for everything else (SQLite files,
  outgoing HTTP, the proxy's own connections), so a flood of connections ends
  in quick refusals instead of `accept()` failing with EMFILE and the process
  no longer opening its own files.
- Bookkeeping costs one small object per open connection and one dict entry
  per address with open connections.
"""

from __future__ import annotations

import ipaddress
import resource
from dataclasses import dataclass

FD_RESERVE_FRACTION = 4  # a quarter of the descriptor limit is kept back
FD_RESERVE_MIN = 64


@dataclass(frozen=True)
class NetLimits:
    """Connection limits of one server (see the module docstring); 0 turns one off."""

    header_timeout: float = 10.0  # seconds to send a whole request head
    body_timeout: float = 30.0  # seconds to send a whole request body once the head is in
    send_timeout: float = 30.0  # seconds an answer may stay unread (writing paused)
    max_per_address: int = 128  # open connections of one client address to one service
    max_sockets: int = 0  # open client connections of the process; 0: from the fd limit


def raise_fd_limit() -> int:
    """Raise the soft file-descriptor limit to the hard one (as Go programs do at start);
    returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY or soft >= hard:
        return soft if soft != resource.RLIM_INFINITY else hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError):
        return soft
    return hard


def sockets_for_fd_limit(fd_limit: int) -> int:
    """The default process-wide socket cap for a descriptor limit."""
    return max(1, fd_limit - max(FD_RESERVE_MIN, fd_limit // FD_RESERVE_FRACTION))


def address_key(host: str | None) -> str:
    """What the per-address cap counts by: the IPv4 address, the /64 of an IPv6 one
    (an IPv4-mapped IPv6 address is its IPv4 address), anything else as given."""
    if not host:
        return ""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


class SocketBudget:
    """The process-wide count of open client connections, shared by every server."""

    __slots__ = ("limit", "open")

    def __init__(self, limit: int) -> None:
        self.limit = limit  # 0: unlimited
        self.open = 0


class Lease:
    """One admitted connection; `release()` (idempotent) when it ends."""

    __slots__ = ("_table", "_key")

    def __init__(self, table: ConnectionTable, key: str) -> None:
        self._table: ConnectionTable | None = table
        self._key = key

    def release(self) -> None:
        table, self._table = self._table, None
        if table is not None:
            table._release(self._key)


class ConnectionTable:
    """Open connections of one server by client address, within a shared `SocketBudget`."""

    def __init__(self, max_per_address: int, budget: SocketBudget) -> None:
        self.max_per_address = max_per_address
        self.budget = budget
        self.by_address: dict[str, int] = {}
        self.refused: dict[str, int] = {}  # by reason, for metrics and tests

    def admit(self, host: str | None) -> Lease | str:
        """A lease for a new connection from `host`, or the reason it is refused
        ("per_address" or "sockets"); the caller must close a refused connection."""
        budget = self.budget
        if budget.limit and budget.open >= budget.limit:
            return self._refuse("sockets")
        key = address_key(host)
        held = self.by_address.get(key, 0)
        if self.max_per_address and held >= self.max_per_address:
            return self._refuse("per_address")
        self.by_address[key] = held + 1
        budget.open += 1
        return Lease(self, key)

    def _refuse(self, reason: str) -> str:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        return reason

    def _release(self, key: str) -> None:
        self.budget.open -= 1
        held = self.by_address[key] - 1
        if held:
            self.by_address[key] = held
        else:
            del self.by_address[key]
