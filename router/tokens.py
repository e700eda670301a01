"""Single-use, short-lived router tokens (`chat.*.router.token`). No I/O.

Tokens are never logged. A token is burnt by its first use, whether or not that
use succeeds, so a guessed or leaked token is worth at most one attempt.

The store is bounded and shared by everyone, and free did:key identities can
ask for tokens: each token is charged to the client address it was issued to,
and a full store forgets the oldest token of the address holding the most
(`hearth.shares`) instead of refusing anybody. Memory: ~500 bytes per live token.
"""

from __future__ import annotations

import hmac
from collections import OrderedDict

from hearth.shares import AddressShares
from hearth.types import Did
from router.ids import new_router_token


class TokenStore:
    """Maps live tokens to the DID they were issued to; bounded in size."""

    def __init__(self, ttl: float = 30.0, capacity: int = 100_000) -> None:
        self.ttl = ttl
        self.capacity = capacity
        # token -> (did, expires, address); insertion order is expiry order (constant ttl).
        self._live: OrderedDict[str, tuple[Did, float, str]] = OrderedDict()
        self._shares: AddressShares[str] = AddressShares()

    def __len__(self) -> int:
        return len(self._live)

    def held_by(self, address: str) -> int:
        """Live tokens issued to `address`."""
        return self._shares.held_by(address)

    def _prune(self, now: float) -> None:
        live = self._live
        while live:
            token, (_did, expires, _address) = next(iter(live.items()))
            if expires > now:
                break
            self._pop(token)

    def _pop(self, token: str) -> tuple[Did, float, str] | None:
        entry = self._live.pop(token, None)
        if entry is not None:
            self._shares.remove(entry[2], token)
        return entry

    def issue(self, did: Did, now: float, address: str = "") -> str:
        """A new token for `did`, valid for `ttl` seconds, charged to `address`.

        When the store is full, the oldest token of the address holding the
        most is forgotten to make room (its owner's connect then fails and
        it asks again).
        """
        self._prune(now)
        if len(self._live) >= self.capacity:
            victim = self._shares.oldest_of_heaviest()
            assert victim is not None
            self._pop(victim)
        token = new_router_token()
        self._live[token] = (did, now + self.ttl, address)
        self._shares.add(address, token)
        return token

    def consume(self, token: str, did: str, now: float) -> bool:
        """True if `token` is live and was issued to `did`. Any use burns the token."""
        self._prune(now)
        entry = self._pop(token)
        if entry is None:
            return False
        issued_to, expires, _address = entry
        return expires > now and hmac.compare_digest(issued_to.encode(), did.encode())
