"""Connection ids (ULIDs) and router tokens."""

from __future__ import annotations

import os
import time

from hearth import crockford
from hearth.types import ConnId

_ULID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_conn_id(now: float | None = None) -> ConnId:
    """A ULID: 48-bit millisecond timestamp and 80 random bits, 26 Crockford characters."""
    ms = int((time.time() if now is None else now) * 1000) & ((1 << 48) - 1)
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    return ConnId("".join(_ULID_ALPHABET[(value >> shift) & 31] for shift in range(125, -1, -5)))


def new_router_token() -> str:
    """32 random bytes as lowercase Crockford base32 (52 characters), as Roomy writes them."""
    return crockford.encode(os.urandom(32))
