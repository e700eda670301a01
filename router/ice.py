"""ICE server lists and TURN REST API credentials. Pure functions, no I/O.

The router answers `["ice-servers"]` with the configured STUN URLs and, when a
TURN secret is configured, TURN entries carrying short-lived credentials in the
"TURN REST API" form that coturn checks with `use-auth-secret`:

    username   = "<unix expiry>:<did>"
    credential = base64(HMAC-SHA1(key=shared secret, msg=username))

coturn recomputes the credential from the username with the same secret and
refuses the allocation once the expiry has passed, so the router never talks
to the TURN server and no per-user state exists anywhere.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

DEFAULT_TURN_TTL = 600  # seconds a TURN credential stays valid


@dataclass(frozen=True, slots=True)
class TurnCredential:
    username: str
    credential: str
    expires_at: int  # unix seconds


def turn_credential(secret: str | bytes, did: str, now: float, ttl: int) -> TurnCredential:
    """A credential for `did` valid from `now` (unix seconds) for `ttl` seconds.

    `secret` must be the value coturn has as `static-auth-secret`.
    """
    if ttl <= 0:
        raise ValueError("ttl must be positive")
    key = secret.encode() if isinstance(secret, str) else secret
    expires_at = int(now) + int(ttl)
    username = f"{expires_at}:{did}"
    digest = hmac.new(key, username.encode(), hashlib.sha1).digest()
    return TurnCredential(username, base64.b64encode(digest).decode("ascii"), expires_at)


def check_turn_credential(secret: str | bytes, username: str, credential: str, now: float) -> bool:
    """What coturn does with a REST credential: same HMAC and not expired (for tests, tools)."""
    key = secret.encode() if isinstance(secret, str) else secret
    expiry, sep, _did = username.partition(":")
    if not sep or not expiry.isdigit() or int(expiry) < now:
        return False
    expected = base64.b64encode(hmac.new(key, username.encode(), hashlib.sha1).digest()).decode()
    return hmac.compare_digest(expected, credential)


def parse_urls(text: str) -> tuple[str, ...]:
    """'stun:a:3478, turn:b:3478?transport=udp' -> a tuple of URLs (settings parser).

    Every URL must use the stun:, stuns:, turn: or turns: scheme.
    """
    urls = tuple(u.strip() for u in text.split(",") if u.strip())
    for url in urls:
        scheme = url.partition(":")[0]
        if scheme not in ("stun", "stuns", "turn", "turns") or url == scheme + ":":
            raise ValueError(f"not a STUN/TURN URL: {url!r}")
    return urls


@dataclass(frozen=True, slots=True)
class IceConfig:
    """What the router hands out. Empty everything -> an empty list (offline LANs)."""

    stun_urls: tuple[str, ...] = ()
    turn_urls: tuple[str, ...] = ()
    turn_secret: str = ""
    turn_ttl: int = DEFAULT_TURN_TTL

    @property
    def turn_enabled(self) -> bool:
        return bool(self.turn_urls and self.turn_secret)


def ice_servers(config: IceConfig, did: str, now: float) -> tuple[int, dict[str, Any]]:
    """The `["ice-servers", ttl]` answer for `did`: (ttl, body as a JSON-able dict).

    `ttl` is how long the answer stays good (the TURN credential lifetime; with
    no TURN the list never expires and ttl is 0, meaning "no expiry").
    The body has the W3C RTCIceServer shape: `{"iceServers": [{"urls": [...]}, ...]}`.
    """
    servers: list[dict[str, Any]] = []
    if config.stun_urls:
        servers.append({"urls": list(config.stun_urls)})
    ttl = 0
    if config.turn_enabled:
        cred = turn_credential(config.turn_secret, did, now, config.turn_ttl)
        servers.append(
            {
                "urls": list(config.turn_urls),
                "username": cred.username,
                "credential": cred.credential,
            }
        )
        ttl = config.turn_ttl
    return ttl, {"iceServers": servers}
