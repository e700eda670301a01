"""Session tokens: a DID proves itself once with a JWT and gets a token for the WebSocket.

The token rides in the URL (`ws://host/?token=…`) so automerge-repo's own
reconnects keep working with no client changes. Only its SHA-256 is stored,
so a leaked database does not leak usable tokens.
"""

from __future__ import annotations

import hashlib
import secrets

TOKEN_BYTES = 32


def new_token() -> str:
    """A fresh unguessable token (URL-safe, no padding)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2
