"""Service-auth JWT verification, shared by every service.

A caller proves it is `iss` with a short JWT signed by the key of its DID:
the `#atproto` key of its DID document for did:plc / did:web (ES256 or
ES256K, minted by its PDS), or the did:key itself (EdDSA, minted by the client).

Every failure raises `AuthError` with a distinct `reason`, so services can
answer 401 with a precise atproto error body and count failures by reason.
"""

from __future__ import annotations

import heapq
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

from hearth.identity import IdentitySyntaxError, parse_did
from hearth.jwt import JwtFormatError, ParsedJwt, parse_jwt
from hearth.keys import KeyFormatError, PublicKey, is_high_s
from hearth.types import Did

# exp may be at most this far in the future (atproto service-auth tokens are short).
MAX_FUTURE_SECONDS = 300
# Clock skew tolerated on exp.
LEEWAY_SECONDS = 5
# A bad signature re-resolves the issuer's DID (key rotation) at most this often per DID.
REFETCH_INTERVAL_SECONDS = 30.0
# DIDs remembered for that limit; beyond, no DID is refetched until entries age out.
MAX_REFETCH_TRACKED = 10_000


class AuthError(Exception):
    """A token was refused. `reason` is a stable machine-readable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    iss: Did
    aud: str
    exp: int
    lxm: str | None
    jti: str


# Looks up the signing key of a DID; `fresh=True` bypasses caches (key rotation).
# Returns None when the DID has no usable key; may raise AuthError.
KeyLookup = Callable[[Did, bool], Awaitable[PublicKey | None]]


class JtiCache:
    """Remembers (iss, jti) pairs until their token expires; bounded in size.

    When full of still-valid entries, new tokens are refused (`busy`) rather
    than forgetting old ones, which would reopen a replay window. One issuer
    may hold at most `per_issuer` live entries (`issuer_busy` beyond), so a
    single DID - did:key identities cost nothing - cannot fill the cache and
    lock everybody else out. Memory: ~300 bytes per live entry (jti included).
    """

    def __init__(self, capacity: int = 100_000, per_issuer: int = 1_000) -> None:
        self._seen: dict[tuple[str, str], float] = {}
        # Min-heap on expiry: every expired entry is pruned, whatever order
        # tokens arrived in (one long-lived token must not shield the rest).
        self._by_expiry: list[tuple[float, str, str]] = []
        self._per_issuer: dict[str, int] = {}
        self._capacity = capacity
        self._issuer_cap = per_issuer

    def __len__(self) -> int:
        return len(self._seen)

    def live_for(self, iss: str) -> int:
        """Entries `iss` holds now (as of the last `consume`)."""
        return self._per_issuer.get(iss, 0)

    def consume(self, iss: str, jti: str, exp: float, now: float) -> None:
        """Record a use; raises AuthError if the pair was already used or a cap is reached."""
        self._prune(now)
        if (iss, jti) in self._seen:
            raise AuthError("replayed", "token already used (jti seen before)")
        if self._per_issuer.get(iss, 0) >= self._issuer_cap:
            raise AuthError("issuer_busy", "too many live tokens for this issuer; retry shortly")
        if len(self._seen) >= self._capacity:
            raise AuthError("busy", "too many live tokens; retry shortly")
        expires = exp + LEEWAY_SECONDS
        self._seen[(iss, jti)] = expires
        heapq.heappush(self._by_expiry, (expires, iss, jti))
        self._per_issuer[iss] = self._per_issuer.get(iss, 0) + 1

    def _prune(self, now: float) -> None:
        heap = self._by_expiry
        while heap and heap[0][0] <= now:
            _, iss, jti = heapq.heappop(heap)
            del self._seen[(iss, jti)]
            left = self._per_issuer[iss] - 1
            if left:
                self._per_issuer[iss] = left
            else:
                del self._per_issuer[iss]


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
        jti_cache: JtiCache | None = None,
        refetch_interval: float = REFETCH_INTERVAL_SECONDS,
    ) -> None:
        # atproto is moving proxied tokens from `aud = <service DID>` to
        # `aud = <service DID>#<service id>`; a service accepts each form it names.
        audiences = (audience,) if isinstance(audience, str) else tuple(audience)
        self.audience = audiences[0]
        self.audiences = frozenset(audiences)
        self._key_lookup = key_lookup
        self._clock = clock
        self._jtis = jti_cache if jti_cache is not None else JtiCache()
        self._refetch_interval = refetch_interval
        self._refetched: OrderedDict[Did, float] = OrderedDict()  # DID -> last forced refetch

    async def verify(self, token: str, *, lxm: str | None) -> VerifiedToken:
        """Check every rule; return the claims or raise AuthError.

        `lxm` is the method being called; when given, the token must name it.
        A successful call consumes the token's jti.
        """
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
        now = self._clock()
        if exp + LEEWAY_SECONDS < now:
            raise AuthError("expired", "token expired")
        if exp > now + MAX_FUTURE_SECONDS:
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
        self._jtis.consume(did, jti, exp, now)
        return VerifiedToken(did, aud, exp, token_lxm, jti)

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
