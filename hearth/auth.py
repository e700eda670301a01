"""Service-auth JWT verification, shared by every service.

A caller proves it is `iss` with a short JWT signed by the key of its DID:
the `#atproto` key of its DID document for did:plc / did:web (ES256 or
ES256K, minted by its PDS), or the did:key itself (EdDSA, minted by the client).

Every failure raises `AuthError` with a distinct `reason`, so services can
answer 401 with a precise atproto error body and count failures by reason.

Verifying costs the service CPU (a signature check) and memory (a jti kept
until the token expires), and anybody can mint did:key tokens for free. So a
service's `AuthBudget` bounds both, charging whoever causes the cost: each
client address has a token bucket of verifications, charged before the token
is parsed; the jti caches of did:key and of atproto issuers are apart, and a
full one forgets entries of the address holding the most, never refusing;
did:key tokens may live only `did_key_lifetime` seconds. A token's jti is
recorded only when the service accepts the request (`check`, then `commit`).
"""

from __future__ import annotations

import heapq
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

from hearth.config import Option, ServiceConfig, positive_int
from hearth.identity import IdentitySyntaxError, parse_did
from hearth.jwt import JwtFormatError, ParsedJwt, parse_jwt
from hearth.keys import KeyFormatError, PublicKey, is_high_s
from hearth.netlimits import address_key
from hearth.ratelimit import RateLimiter
from hearth.shares import AddressShares
from hearth.types import Did

# exp may be at most this far in the future (atproto service-auth tokens are short).
MAX_FUTURE_SECONDS = 300
# Clock skew tolerated on exp.
LEEWAY_SECONDS = 5
# A bad signature re-resolves the issuer's DID (key rotation) at most this often per DID.
REFETCH_INTERVAL_SECONDS = 30.0
# DIDs remembered for that limit; beyond, no DID is refetched until entries age out.
MAX_REFETCH_TRACKED = 10_000
# What an issuer at its live-token cap is told to wait (its oldest token expires by then, roughly).
ISSUER_BUSY_RETRY_SECONDS = 10.0


class AuthError(Exception):
    """A token was refused. `reason` is a stable machine-readable code.

    `retry_after` (seconds) is set when the token may well be good and the
    caller should simply try again later (`rate_limited`, `issuer_busy`).
    """

    def __init__(self, reason: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    iss: Did
    aud: str
    exp: int
    lxm: str | None
    jti: str
    client: str = ""  # the address key its verification was charged to


# Looks up the signing key of a DID; `fresh=True` bypasses caches (key rotation).
# Returns None when the DID has no usable key; may raise AuthError.
KeyLookup = Callable[[Did, bool], Awaitable[PublicKey | None]]


@dataclass(frozen=True, slots=True)
class AuthLimits:
    """What verifying tokens may cost a service; see docs/configuration.md.

    `rate`/`burst`: token verifications per client address (an IPv6 address
    counts per /64), charged before anything else is looked at; `rate` 0
    turns the budget off. `did_key_capacity`/`atproto_capacity`: live jtis
    remembered for did:key issuers and for did:plc/did:web issuers, apart.
    `per_issuer`: live jtis of one issuer. `did_key_lifetime`: how far ahead
    a did:key token's exp may be (atproto tokens: `MAX_FUTURE_SECONDS`).
    """

    rate: float = 20.0
    burst: int = 200
    max_addresses: int = 100_000
    did_key_capacity: int = 50_000
    atproto_capacity: int = 100_000
    per_issuer: int = 1_000
    did_key_lifetime: int = 60


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise ValueError("must be 0 or more")
    return value


_LIMITS = AuthLimits()
# Every service that verifies tokens declares these (HEARTH_<SERVICE>_AUTH_*, --auth-*).
AUTH_OPTIONS = (
    Option(
        "auth_rate",
        _non_negative_float,
        _LIMITS.rate,
        "token verifications per second per client address (IPv6: per /64), sustained; 0: off",
    ),
    Option("auth_burst", positive_int, _LIMITS.burst, "token verifications per address, burst"),
    Option(
        "auth_did_key_capacity",
        positive_int,
        _LIMITS.did_key_capacity,
        "live did:key token ids remembered against replay (~650-900 bytes each)",
    ),
    Option(
        "auth_atproto_capacity",
        positive_int,
        _LIMITS.atproto_capacity,
        "live did:plc/did:web token ids remembered against replay (~650-900 bytes each)",
    ),
    Option("auth_per_issuer", positive_int, _LIMITS.per_issuer, "live token ids of one issuer DID"),
    Option(
        "auth_did_key_lifetime",
        positive_int,
        _LIMITS.did_key_lifetime,
        "seconds ahead a did:key token's exp may be",
    ),
)


def auth_limits_from_config(config: ServiceConfig) -> AuthLimits:
    """The `AUTH_OPTIONS` of a service's configuration (defaults where absent)."""

    def get(name: str, default: Any) -> Any:
        return config.options.get(f"auth_{name}", default)

    return AuthLimits(
        rate=float(get("rate", _LIMITS.rate)),
        burst=int(get("burst", _LIMITS.burst)),
        did_key_capacity=int(get("did_key_capacity", _LIMITS.did_key_capacity)),
        atproto_capacity=int(get("atproto_capacity", _LIMITS.atproto_capacity)),
        per_issuer=int(get("per_issuer", _LIMITS.per_issuer)),
        did_key_lifetime=int(get("did_key_lifetime", _LIMITS.did_key_lifetime)),
    )


class JtiCache:
    """Remembers (iss, jti) pairs until their token expires; bounded in size.

    Every entry is charged to the client address (`address_key`) its request
    came from. When the cache is full, it forgets the oldest entry of the
    address holding the most live entries (`hearth.shares`), so a flood
    displaces its own entries and never those of an address holding fewer:
    the cost of the cache is borne by whoever fills it, and a full cache
    refuses nobody. (A forgotten token could be replayed until it expires;
    only tokens that came from the heaviest address are exposed.) One issuer
    may hold at most `per_issuer` live entries (`issuer_busy` beyond).

    `check` then `record`, with no await between them, is the two-step use:
    a request refused between the two leaves no trace. Memory: ~650 bytes per
    live entry, jti and iss included (~900 when each comes from another address).
    """

    def __init__(self, capacity: int = 100_000, per_issuer: int = 1_000) -> None:
        if capacity < 1 or per_issuer < 1:
            raise ValueError("jti cache capacity and per-issuer cap must be >= 1")
        self._capacity = capacity
        self._issuer_cap = per_issuer
        self._seen: dict[tuple[str, str], tuple[float, str]] = {}  # -> (expires, address)
        # Min-heap on expiry: every expired entry is pruned, whatever order
        # tokens arrived in (one long-lived token must not shield the rest).
        # Entries evicted early stay here until popped (skipped then), so the
        # heap is rebuilt when it holds twice what the cache does.
        self._by_expiry: list[tuple[float, str, str]] = []
        self._per_issuer: dict[str, int] = {}
        self._shares: AddressShares[tuple[str, str]] = AddressShares()

    def __len__(self) -> int:
        return len(self._seen)

    def live_for(self, iss: str) -> int:
        """Entries `iss` holds now (as of the last `check` or `record`)."""
        return self._per_issuer.get(iss, 0)

    def held_by(self, address: str) -> int:
        """Entries charged to `address` now."""
        return self._shares.held_by(address)

    def check(self, iss: str, jti: str, now: float) -> None:
        """Raise AuthError if the pair was used already or `iss` is at its cap; records nothing."""
        self._prune(now)
        if (iss, jti) in self._seen:
            raise AuthError("replayed", "token already used (jti seen before)")
        if self._per_issuer.get(iss, 0) >= self._issuer_cap:
            raise AuthError(
                "issuer_busy",
                "too many live tokens for this issuer; retry shortly",
                retry_after=ISSUER_BUSY_RETRY_SECONDS,
            )

    def record(self, iss: str, jti: str, exp: float, address: str, now: float) -> None:
        """Record a use charged to `address` (as `check`, then remember it)."""
        self.check(iss, jti, now)
        if len(self._seen) >= self._capacity:
            victim = self._shares.oldest_of_heaviest()
            assert victim is not None
            self._forget(victim)
        key = (iss, jti)
        expires = exp + LEEWAY_SECONDS
        self._seen[key] = (expires, address)
        heapq.heappush(self._by_expiry, (expires, iss, jti))
        self._per_issuer[iss] = self._per_issuer.get(iss, 0) + 1
        self._shares.add(address, key)
        if len(self._by_expiry) > 2 * self._capacity:
            self._by_expiry = [(e, i, j) for (i, j), (e, _a) in self._seen.items()]
            heapq.heapify(self._by_expiry)

    def _forget(self, key: tuple[str, str]) -> None:
        _expires, address = self._seen.pop(key)
        iss = key[0]
        left = self._per_issuer[iss] - 1
        if left:
            self._per_issuer[iss] = left
        else:
            del self._per_issuer[iss]
        self._shares.remove(address, key)

    def _prune(self, now: float) -> None:
        heap = self._by_expiry
        seen = self._seen
        while heap and heap[0][0] <= now:
            expires, iss, jti = heapq.heappop(heap)
            entry = seen.get((iss, jti))
            if entry is not None and entry[0] == expires:
                self._forget((iss, jti))


class AuthBudget:
    """The shared state token verification may use in one service, and its bounds.

    Every verifier of a service should share one budget: an address's
    verifications are counted together whichever endpoint they hit. did:key
    issuers (free to create) and atproto issuers get separate jti caches, so
    no flood of did:key identities can displace an atproto user's entry.
    """

    def __init__(self, limits: AuthLimits | None = None) -> None:
        self.limits = limits = limits if limits is not None else AuthLimits()
        self._addresses = (
            RateLimiter(limits.burst, limits.rate * 60.0, limits.max_addresses)
            if limits.rate > 0
            else None
        )
        self.did_key_jtis = JtiCache(limits.did_key_capacity, limits.per_issuer)
        self.atproto_jtis = JtiCache(limits.atproto_capacity, limits.per_issuer)

    def jtis_for(self, did: str) -> JtiCache:
        return self.did_key_jtis if did.startswith("did:key:") else self.atproto_jtis

    def spend(self, address: str, now: float) -> None:
        """Charge one verification to `address`; raise AuthError('rate_limited') when spent."""
        if self._addresses is None:
            return
        wait = self._addresses.take(address, now)
        if wait > 0:
            raise AuthError(
                "rate_limited", "too many token verifications from this address", retry_after=wait
            )


def did_key_lookup(did: Did) -> PublicKey:
    try:
        return PublicKey.from_did_key(did)
    except KeyFormatError as e:
        raise AuthError("bad_issuer", f"did:key is not a usable key: {e}") from e


def atproto_key_from_document(doc: dict[str, Any], did: str) -> PublicKey | None:
    """The `#atproto` Multikey of a DID document, or None if absent or unusable."""
    methods = doc.get("verificationMethod")
    if not isinstance(methods, list):
        return None
    for vm in methods:
        if not isinstance(vm, dict):
            continue
        vid = vm.get("id")
        if vid not in ("#atproto", f"{did}#atproto"):
            continue
        mb = vm.get("publicKeyMultibase")
        if not isinstance(mb, str):
            return None
        try:
            return PublicKey.from_multibase(mb)
        except KeyFormatError:
            return None
    return None


class ServiceAuthVerifier:
    """Verifies service-auth JWTs addressed to one service DID.

    `key_lookup` resolves non-did:key issuers; did:key issuers are checked locally.
    """

    def __init__(
        self,
        audience: str | Collection[str],
        key_lookup: KeyLookup,
        *,
        clock: Callable[[], float] = time.time,
        budget: AuthBudget | None = None,
        refetch_interval: float = REFETCH_INTERVAL_SECONDS,
    ) -> None:
        # atproto is moving proxied tokens from `aud = <service DID>` to
        # `aud = <service DID>#<service id>`; a service accepts each form it names.
        audiences = (audience,) if isinstance(audience, str) else tuple(audience)
        self.audience = audiences[0]
        self.audiences = frozenset(audiences)
        self._key_lookup = key_lookup
        self._clock = clock
        self.budget = budget if budget is not None else AuthBudget()
        self._refetch_interval = refetch_interval
        self._refetched: OrderedDict[Did, float] = OrderedDict()  # DID -> last forced refetch

    async def verify(
        self, token: str, *, lxm: str | None, client: str | None = None
    ) -> VerifiedToken:
        """`check`, then `commit`: for callers that accept a request on its token alone."""
        verified = await self.check(token, lxm=lxm, client=client)
        self.commit(verified)
        return verified

    def commit(self, verified: VerifiedToken) -> None:
        """Record the token's jti as used: call once the request is accepted.

        Call it right after `check` with no await between, and it cannot fail;
        otherwise another request may have used the same jti meanwhile
        (AuthError `replayed`, or `issuer_busy`).
        """
        jtis = self.budget.jtis_for(verified.iss)
        jtis.record(verified.iss, verified.jti, verified.exp, verified.client, self._clock())

    async def check(
        self, token: str, *, lxm: str | None, client: str | None = None
    ) -> VerifiedToken:
        """Check every rule; return the claims or raise AuthError. Records nothing.

        `lxm` is the method being called; when given, the token must name it.
        `client` is the caller's address (the socket peer, or what a trusted
        proxy says): its budget is charged first, before the token is even
        parsed, so a flood is refused before it costs a signature check or
        touches the jti cache. None means "not from the network" (in-process
        callers) and shares one budget. The token stays unused until
        `commit`: refuse the request for any other reason in between and the
        client may use the token again.
        """
        now = self._clock()
        address = address_key(client)
        self.budget.spend(address, now)
        try:
            jwt = parse_jwt(token)
        except JwtFormatError as e:
            raise AuthError("malformed", f"malformed token: {e}") from e
        alg = jwt.header.get("alg")
        if (
            not isinstance(alg, str)
            or alg.lower() == "none"
            or alg not in ("EdDSA", "ES256", "ES256K")
        ):
            raise AuthError("bad_alg", f"unsupported alg {alg!r}")
        claims = jwt.payload
        iss = claims.get("iss")
        if not isinstance(iss, str):
            raise AuthError("bad_issuer", "iss missing")
        try:
            did = parse_did(iss.split("#", 1)[0])
        except IdentitySyntaxError as e:
            raise AuthError("bad_issuer", f"iss is not a DID: {e}") from e
        exp = claims.get("exp")
        if exp is None:
            raise AuthError("no_exp", "exp is required")
        if not isinstance(exp, int) or isinstance(exp, bool):
            raise AuthError("malformed", "exp must be an integer")
        if exp + LEEWAY_SECONDS < now:
            raise AuthError("expired", "token expired")
        if did.startswith("did:key:"):
            # Anybody can mint did:key tokens: keep their jti entries short-lived.
            ahead = self.budget.limits.did_key_lifetime
            if exp > now + ahead + LEEWAY_SECONDS:
                raise AuthError(
                    "exp_too_far", f"a did:key token's exp may be at most {ahead} s ahead"
                )
        elif exp > now + MAX_FUTURE_SECONDS:
            raise AuthError("exp_too_far", "exp is too far in the future")
        aud = claims.get("aud")
        if not isinstance(aud, str) or aud not in self.audiences:
            raise AuthError("bad_audience", f"aud must be {self.audience}")
        token_lxm = claims.get("lxm")
        if token_lxm is not None and not isinstance(token_lxm, str):
            raise AuthError("malformed", "lxm must be a string")
        if lxm is not None and token_lxm != lxm:
            raise AuthError("bad_lxm", f"lxm must be {lxm}")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > 256:
            raise AuthError("no_jti", "jti is required (tokens are single-use)")

        key = await self._lookup(did, fresh=False)
        failure = _signature_failure(key, alg, jwt)
        if failure in ("bad_alg", "bad_signature") and self._may_refetch(did, now):
            # The DID may have rotated its key (perhaps to another curve) since
            # we cached its document: look once more, bypassing caches.
            key = await self._lookup(did, fresh=True)
            failure = _signature_failure(key, alg, jwt)
        if failure is not None:
            raise AuthError(failure, _FAILURES[failure].format(alg=alg))
        self.budget.jtis_for(did).check(did, jti, self._clock())
        return VerifiedToken(did, aud, exp, token_lxm, jti, address)

    def _may_refetch(self, did: Did, now: float) -> bool:
        """Whether a failed signature may re-resolve `did` now; records it if so.

        At most one forced refetch per DID per `refetch_interval`, so a caller
        sending bad signatures cannot make us query the PLC directory or a
        did:web host on every request.
        """
        if did.startswith("did:key:"):
            return False  # the key is the DID: nothing to refetch
        seen = self._refetched
        while seen:
            first, at = next(iter(seen.items()))
            if at + self._refetch_interval > now:
                break
            del seen[first]
        last = seen.get(did)
        if last is not None and last + self._refetch_interval > now:
            return False
        if len(seen) >= MAX_REFETCH_TRACKED:
            return False  # under a flood of distinct DIDs, no refetch until it ebbs
        seen[did] = now  # newest last: the order pruning relies on
        return True

    async def _lookup(self, did: Did, *, fresh: bool) -> PublicKey:
        if did.startswith("did:key:"):
            return did_key_lookup(did)
        key = await self._key_lookup(did, fresh)
        if key is None:
            raise AuthError("bad_issuer", "issuer DID has no usable #atproto key")
        try:
            key.jwt_alg  # noqa: B018 - raises for key types that cannot sign
        except KeyFormatError as e:
            raise AuthError("bad_issuer", str(e)) from e
        return key


_FAILURES = {
    "bad_alg": "alg {alg} does not match the issuer's key type",
    "high_s": "ECDSA signature is not low-S (atproto requires low-S)",
    "bad_signature": "signature does not verify",
}


def _signature_failure(key: PublicKey, alg: str, jwt: ParsedJwt) -> str | None:
    """The reason `jwt` is not signed by `key` with `alg`, or None when it is."""
    if key.jwt_alg != alg:
        return "bad_alg"
    if is_high_s(jwt.signature, key.type):
        # The malleable twin of a signature: refused as such, whatever the key.
        return "high_s"
    if not key.verify(jwt.signing_input, jwt.signature):
        return "bad_signature"
    return None


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header, or AuthError('missing')."""
    if not authorization:
        raise AuthError("missing", "Authorization header required")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("missing", "Authorization must be 'Bearer <token>'")
    return token.strip()
