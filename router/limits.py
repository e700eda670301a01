"""Router limits and the token bucket that enforces rates. No I/O."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Limits:
    """Every limit the router enforces; all are settings and reported in `welcome`."""

    max_frame_bytes: int = 1 << 20  # one WebSocket message (a whole Roomy frame)
    max_interests: int = 1000  # docs in one connection's interest set
    max_connections_per_did: int = 64
    max_connections: int = 50_000  # whole router; did:key identities cost nothing to make
    rate_frames: float = 2000.0  # frames per second, sustained, per connection
    burst_frames: float = 4000.0
    rate_bytes: float = 8 << 20  # bytes per second, sustained, per connection
    burst_bytes: float = 16 << 20
    # `listen` fans out (a join or leave to every other member of each doc it
    # changes, and one back per member), so it has its own, much smaller bucket.
    rate_listen: float = 10.0  # listen frames per second, sustained, per connection
    burst_listen: float = 50.0  # (0: no listen bucket)
    max_outgoing_bytes: int = 4 << 20  # unsent bytes queued for one connection
    max_errors: float = 50.0  # error burst before the connection is closed
    error_rate: float = 1.0  # errors per second forgiven
    ping_interval: float = 20.0  # seconds between keepalive pings (0: off)
    idle_timeout: float = 60.0  # seconds without any inbound frame (pongs count) -> close
    # Bytes of unfinished messages (a frame still arriving, the fragments of a
    # message) held for all connections together; over it the connection whose
    # unfinished message is the oldest is closed with 1013.
    max_partial_bytes: int = 64 << 20
    # Seconds an unfinished message may take from its first byte (0: no limit).
    partial_timeout: float = 30.0

    def as_info(self) -> dict[str, Any]:
        """The limits as reported in `welcome`."""
        return asdict(self)


class TokenBucket:
    """Allows `rate` units per second with bursts of `burst`; starts full."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def take(self, amount: float, now: float) -> bool:
        """Consume `amount` if available and return True; otherwise consume nothing."""
        tokens = self.tokens + (now - self.stamp) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        self.stamp = now
        if tokens >= amount:
            self.tokens = tokens - amount
            return True
        self.tokens = tokens
        return False
