"""Single-use, short-lived router tokens (`chat.*.router.token`). No I/O.

Tokens are never logged. A token is burnt by its first use, whether or not that
use succeeds, so a guessed or leaked token is worth at most one attempt.
"""

from __future__ import annotations

import hmac
from collections import OrderedDict

from hearth.types import Did
from router.ids import new_router_token


class TokenStoreFull(Exception):
    """Too many live tokens; the caller should answer 503 and the client retry."""


class TokenStore:
    """Maps live tokens to the DID they were issued to; bounded in size."""

    def __init__(self, ttl: float = 30.0, capacity: int = 100_000) -> None:
        self.ttl = ttl
        self.capacity = capacity
        # token -> (did, expires); insertion order is expiry order (constant ttl).
        self._live: OrderedDict[str, tuple[Did, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._live)

    def _prune(self, now: float) -> None:
        live = self._live
        while live:
            token, (_did, expires) = next(iter(live.items()))
            if expires > now:
                break
            del live[token]

    def issue(self, did: Did, now: float) -> str:
        """A new token for `did`, valid for `ttl` seconds; raises TokenStoreFull."""
        self._prune(now)
        if len(self._live) >= self.capacity:
            raise TokenStoreFull("too many live router tokens")
        token = new_router_token()
        self._live[token] = (did, now + self.ttl)
        return token

    def consume(self, token: str, did: str, now: float) -> bool:
        """True if `token` is live and was issued to `did`. Any use burns the token."""
        self._prune(now)
        entry = self._live.pop(token, None)
        if entry is None:
            return False
        issued_to, expires = entry
        return expires > now and hmac.compare_digest(issued_to.encode(), did.encode())
